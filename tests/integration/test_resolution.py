"""Never take another model's place: with the hook, every name that is not ours resolves as in Pyserini.

A model is ours only when the user says so: ``--encoder diffret`` (the registered name, exactly),
``--encoder-class diffret``, or a folder holding ``diffret_config.json``. ``resolution_probe.py`` records
which class (with which arguments) Pyserini's encode command, FAISS/hybrid query side, impact searcher
and FAISS searcher choose for each name, with every encoder class stubbed (nothing is downloaded),
once with the start-up hook off and once with it on (subprocesses).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyserini_diffret.integration import registration
from tests.conftest import run_python

PROBE = Path(__file__).with_name("resolution_probe.py")
OURS_DOCUMENT, OURS_DENSE, OURS_IMPACT = "DiffRetDocumentEncoder", "DiffRetDenseQueryEncoder", "DiffRetImpactQueryEncoder"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("resolution")
    plain = root / "diffret-lab" / "tiny-bert"  # an ordinary model folder whose *path* holds "diffret"
    plain.mkdir(parents=True)
    (plain / "config.json").write_text('{"model_type": "bert"}')
    neutral = root / "models" / "tiny-model"  # a folder with our config: ours, whatever its name
    neutral.mkdir(parents=True)
    (neutral / "config.json").write_text('{"model_type": "bert"}')
    (neutral / registration.CONFIG_NAME).write_text("{}")
    splade_named = root / "splade-named"  # ours by its config, although Pyserini's rules would see "splade"
    splade_named.mkdir()
    (splade_named / registration.CONFIG_NAME).write_text("{}")
    cached = root / "diffret-queries.jsonl"  # a file of encoded queries: Pyserini's CachedDataQueryEncoder
    cached.write_text("")
    return {"plain": str(plain), "ours": str(neutral), "ours_splade": str(splade_named), "cached": str(cached)}


def probe(mode: str, folders: dict[str, str]) -> dict:
    env = {"PYSERINI_DIFFRET_HOOK": "0"} if mode == "off" else {}
    out = run_python(str(PROBE), mode, *folders.values(), **env).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESOLUTION "))
    return json.loads(line[len("RESOLUTION "):])


@pytest.fixture(scope="module")
def resolutions(folders) -> tuple[dict, dict]:
    return probe("off", folders), probe("on", folders)


def _ours(key: str, folders: dict[str, str]) -> bool:
    """Keys where the hook is meant to differ: our name, our class, our config folders."""
    parts = key.split("|")
    name = parts[1] if len(parts) > 1 else ""
    return name in {"diffret", folders["ours"], folders["ours_splade"]} or key.endswith("|class=diffret")


def test_every_other_name_resolves_as_without_the_hook(resolutions, folders):
    off, on = resolutions
    assert off.keys() == on.keys()
    assert off["document-map-keys"] == on["document-map-keys"] and "auto" in on["document-map-keys"]
    differences = {key: (off[key], on[key]) for key in off if not _ours(key, folders) and off[key] != on[key]}
    assert not differences, "\n".join(f"{key}:\n  without hook: {a}\n  with hook:    {b}"
                                      for key, (a, b) in differences.items())
    # The case, spelled out: an ordinary folder whose path holds "diffret" stays Pyserini's.
    assert on[f"init_encoder|{folders['plain']}"][0] == "AutoDocumentEncoder"
    assert on["init_encoder|some/path/diffret-lab/tiny-bert"][0] == "AutoDocumentEncoder"
    assert on["init_encoder|DiffRet-models/splade"][0] == "SpladeDocumentEncoder"
    assert on["init_query_encoder|/x/diffretriever/contriever"][0] == "AutoQueryEncoder"
    assert on["impact_from_str|DiffRet-models/splade"][0] == "SpladeQueryEncoder"
    assert on["impact_from_str|some/path/diffret-lab/tiny-bert"] == "None"
    assert on[f"impact_from_str|{folders['cached']}"][0] == "CachedDataQueryEncoder"
    assert on["faiss_from_str|some/path/diffret-lab/tiny-bert"][0] == "AutoQueryEncoder"


def test_our_names_still_resolve_to_ours(resolutions, folders):
    _, on = resolutions
    for name in ["diffret", folders["ours"], folders["ours_splade"]]:
        assert on[f"init_encoder|{name}"][0] == OURS_DOCUMENT, name
        assert on[f"init_query_encoder|{name}"][0] == OURS_DENSE, name
        assert on[f"impact_from_str|{name}"][0] == OURS_IMPACT, name
        assert on[f"faiss_from_str|{name}"][0] == OURS_DENSE, name
    for name in ["models/plain-bert", "some/path/diffret-lab/tiny-bert", folders["plain"]]:
        assert on[f"init_encoder|{name}|class=diffret"][0] == OURS_DOCUMENT, name
        assert on[f"init_query_encoder|{name}|class=diffret"][0] == OURS_DENSE, name
    assert on["init_encoder|diffret"][2] == {"device": "'cpu'", "model_name": "'diffret'"}


def test_unknown_prebuilt_index_gives_pyserinis_message(resolutions):
    off, on = resolutions
    asked = [key for key in on if key.startswith("prebuilt|")]
    assert any(key.endswith("|no-such-prebuilt-index") for key in asked)
    if on["offline"]:  # the catalogue aliases are unknown names offline
        assert any(key.endswith("|msmarco-passage-unicoil-d2q") for key in asked)
    for key in asked:
        index = key.rsplit("|", 1)[1]
        assert on[key] == off[key], key
        assert on[key]["returned"] == "None", (key, on[key])
        assert f"Unrecognized index name {index}" in on[key]["printed"], (key, on[key])


def test_encode_command_leaves_a_bert_folder_named_diffret_to_pyserini(tmp_path):
    """The issue's command: ``python -m pyserini.encode ... --encoder some/path/diffret-lab/tiny-bert``.

    With the hook it used to load the folder as ours (``cannot tell the backbone from config.json``); now
    Pyserini's AutoDocumentEncoder encodes it, as without the plug-in: dense vectors of the model's size.
    """
    from transformers import BertModel

    from tests.tiny_models import make_mlm

    folder = tmp_path / "some" / "path" / "diffret-lab" / "tiny-bert"
    make_mlm(folder)
    BertModel.from_pretrained(folder).save_pretrained(folder)  # an ordinary BERT encoder, no MLM head
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "contents": text}) + "\n"
                              for i, text in enumerate(["The quick brown fox.", "Aspirin reduces heart attack risk."])))
    run_python("-m", "pyserini.encode", "input", "--corpus", str(corpus), "output", "--embeddings",
               str(tmp_path / "out"), "encoder", "--encoder", str(folder), "--device", "cpu", "--batch", "2")
    lines = [json.loads(line) for line in (tmp_path / "out" / "embeddings.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["0", "1"]
    assert all(isinstance(line["vector"], list) and len(line["vector"]) == 32 for line in lines)


def test_class_hint_rule():
    doc_map = {"dpr": object, "splade": object, "auto": object, registration.KEY: object}
    assert registration.class_hint("diffret", None, doc_map) == registration.KEY
    assert registration.class_hint("DiffRet-models/splade", None, doc_map) is None  # Pyserini's loop: splade
    assert registration.class_hint("some/path/diffret-lab/tiny-bert", None, doc_map) == "auto"  # Pyserini's fallback
    assert registration.class_hint("bert-base-uncased", None, doc_map) is None
    assert registration.class_hint("anything", "dpr", doc_map) == "dpr"
    assert registration.class_hint(None, None, doc_map) is None
    assert not registration.is_ours("diffret-base") and not registration.is_ours("DIFFRET")
    assert registration.is_ours("diffret")
