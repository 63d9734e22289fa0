"""Exact parity with the reference implementation (ielab/diffretriever), on tiny folders of the real Dream and
LLaDA layouts.

The numbers were recorded by ``tools/reference/record.py``: the reference's own encoders (transformers 4.54.0,
the models' own modelling code, float32) on the folders ``tests/real_arch.py`` builds, for K = 1, 4, 16,
queries and documents, the zero-shot read-out (``encode_type='all_steps'``, one denoising step, ``few``
prompts, top-128, truncated impacts, stop-token truncation) and the fine-tuned read-out of
``scripts/encode.py`` (top-256, rounded impacts, no truncation), every text side in one left-padded batch
("all") and one text per batch ("single"). Here the same folders are rebuilt (weights checked by checksum)
and loaded natively with ``load_model``; prompt ids, padding and slot positions must be equal, slot and single
vectors within 1e-5, integer impacts exactly equal.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from pyserini_diffret import load_model
from pyserini_diffret.core.config import RetrieverConfig
from tests.reference.folders import ARCHS, build_folder, scale_head_row, weights_checksum

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ATOL = 1e-5
RECORD = "rerun tools/reference/record.py (see tools/reference/README.md)"


def _fixture(arch: str) -> dict | None:
    path = FIXTURES / f"{arch}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


FIX = {arch: _fixture(arch) for arch in ARCHS}
CASES = [(arch, i) for arch in ARCHS if FIX[arch] for i in range(len(FIX[arch]["cases"]))]


def _case_id(item) -> str:
    arch, i = item
    c = FIX[arch]["cases"][i]
    return f"{arch}-{c['readout']}-top{c['terms_per_slot']}-k{c['k']}-{c['side']}-{c['batch']}"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The recorded folders, rebuilt from ``tests/real_arch.py`` with the recorded arguments and edit."""
    out = {}
    for arch in ARCHS:
        fixture = FIX[arch]
        if fixture is None:
            continue
        spec = fixture["folder"]
        folder = build_folder(arch, tmp_path_factory.mktemp(arch), **spec["arguments"])
        edit = (spec.get("edit") or {}).get("scale_head_row")
        if edit:
            scale_head_row(folder, arch, edit["token_id"], edit["factor"])
        if weights_checksum(folder) != spec["weights_sha256"]:
            pytest.fail(f"{arch}: tests/real_arch.py no longer builds the weights the reference numbers were "
                        f"recorded on (checksum differs); {RECORD}")
        out[arch] = folder
    return out


@pytest.fixture(scope="module")
def models(folders):
    """One model per (arch, read-out), loaded natively; K is set per case."""
    cache = {}

    def get(arch: str, readout: str, terms_per_slot: int | None = None):
        key = (arch, readout, terms_per_slot)
        if key not in cache:
            settings = FIX[arch]["settings"]
            options = dict(sequence_budget=settings["sequence_budget"], split_special_tokens=False)
            if readout == "fine_tuned":
                ft = settings["fine_tuned"]
                options.update(quantisation=ft["quantisation"], stop_truncation=ft["stop_truncation"],
                               terms_per_slot=terms_per_slot or ft["terms_per_slot"])
            elif terms_per_slot is not None:
                options.update(terms_per_slot=terms_per_slot)
            cache[key] = load_model(folders[arch], **options)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def encoded(models):
    """Our encoding of one recorded case: ``(model, texts, Representations)`` (computed once per case)."""

    @lru_cache(maxsize=None)
    def get(arch: str, index: int):
        case = FIX[arch]["cases"][index]
        # zero-shot: the folder's defaults (their top-128 is checked in the settings test)
        model = models(arch, case["readout"], case["terms_per_slot"] if case["readout"] == "fine_tuned" else None)
        model.config.k_query = model.config.k_doc = case["k"]
        texts = _texts(arch, case["side"])
        size = len(texts) if case["batch"] == "all" else 1
        if case["side"] == "query":
            reps = model.encode_queries(texts, batch_size=size)
        else:
            docs = FIX[arch]["texts"]["document"]
            reps = model.encode_documents([d["text"] for d in docs], [d["title"] for d in docs], batch_size=size)
        return model, texts, reps

    return get


def _texts(arch: str, side: str) -> list[str]:
    texts = FIX[arch]["texts"]
    return texts["query"] if side == "query" else texts["document_joined"]


def _batches(texts: list[str], case: dict) -> list[list[str]]:
    return [texts] if case["batch"] == "all" else [[t] for t in texts]


pytestmark = pytest.mark.skipif(not CASES, reason=f"no reference fixtures in {FIXTURES}; {RECORD}")


# -- settings ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [a for a in ARCHS if FIX[a]])
def test_zero_shot_defaults_are_the_reference_settings(arch):
    """A plain folder's defaults reproduce the recorded zero-shot read-out (no option needed but K and the
    special-token rule)."""
    recorded = FIX[arch]["settings"]
    defaults = RetrieverConfig.zero_shot(arch)
    zs = recorded["zero_shot"]
    assert (defaults.sequence_budget, defaults.terms_per_slot, defaults.quantisation, defaults.stop_truncation) == (
        recorded["sequence_budget"], zs["terms_per_slot"], zs["quantisation"], zs["stop_truncation"])
    assert defaults.max_query_length is None and defaults.max_document_length is None
    assert defaults.logit_shift == 0 and defaults.scale == 100.0


@pytest.mark.parametrize("arch", [a for a in ARCHS if FIX[a]])
def test_document_text_rule(models, arch):
    docs = FIX[arch]["texts"]["document"]
    model = models(arch, "zero_shot")
    assert model.document_texts([d["text"] for d in docs], [d["title"] for d in docs]) == \
        FIX[arch]["texts"]["document_joined"]


# -- per case ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("item", CASES, ids=_case_id)
def test_prompt_ids_padding_and_slots(models, item):
    arch, index = item
    case = FIX[arch]["cases"][index]
    model = models(arch, case["readout"], case["terms_per_slot"] if case["readout"] == "fine_tuned" else None)
    texts = _texts(arch, case["side"])
    for batch_texts, recorded in zip(_batches(texts, case), case["batches"], strict=True):
        batch = model.prompts.build(batch_texts, case["side"], case["k"])
        pads = [int(np.argmax(row)) for row in batch.attention_mask]
        rows = [ids[pad:].tolist() for ids, pad in zip(batch.input_ids, pads)]
        assert rows == recorded["rows"]
        assert pads == recorded["padding"]
        assert all(mask[pad:].all() and not mask[:pad].any() for mask, pad in zip(batch.attention_mask, pads))
        if recorded["pad_id"] is not None:
            assert {int(batch.input_ids[i, j]) for i, pad in enumerate(pads) for j in range(pad)} == {recorded["pad_id"]}
        assert list(range(batch.slot_start, batch.slot_start + case["k"])) == recorded["slot_positions"]


@pytest.mark.parametrize("item", [c for c in CASES if FIX[c[0]]["cases"][c[1]]["readout"] == "zero_shot"
                                  and FIX[c[0]]["cases"][c[1]]["batch"] == "all"], ids=_case_id)
def test_decoded_slot_ids_and_stop_tokens(models, item):
    """The slot argmaxes the stop-token truncation reads, and the stop set (special ids but the mask). (One
    batch per side: the one-text batches' truncation is checked through their vectors and impacts.)"""
    arch, index = item
    case = FIX[arch]["cases"][index]
    model = models(arch, "zero_shot")
    module = model.runtime.module
    assert sorted(np.flatnonzero(module.stop_ids.cpu().numpy()).tolist()) == case["stop_ids"]
    decoded = []
    for batch_texts in _batches(_texts(arch, case["side"]), case):
        batch = model.prompts.build(batch_texts, case["side"], case["k"])
        with torch.inference_mode():
            _, logits = module.backbone.slot_states(torch.from_numpy(batch.input_ids),
                                                    torch.from_numpy(batch.attention_mask),
                                                    torch.arange(case["k"]), len(model.layout.tail_ids))
        decoded += logits.argmax(-1).tolist()
    assert decoded == case["decoded_ids"]


@pytest.mark.parametrize("item", CASES, ids=_case_id)
def test_slot_and_single_vectors(encoded, item):
    arch, index = item
    case = FIX[arch]["cases"][index]
    _, _, reps = encoded(arch, index)
    slots = np.asarray(case["slot_vectors"], dtype=np.float32)
    assert reps.slots.dtype == np.float32 and reps.slots.shape == slots.shape
    np.testing.assert_allclose(reps.slots, slots, rtol=0, atol=ATOL)
    # truncated slots are exactly zero on both sides
    assert np.array_equal(~np.any(reps.slots != 0, axis=-1), ~np.any(slots != 0, axis=-1))
    np.testing.assert_allclose(reps.dense, np.asarray(case["single_vectors"], dtype=np.float32), rtol=0, atol=ATOL)


@pytest.mark.parametrize("item", CASES, ids=_case_id)
def test_term_impacts(encoded, item):
    arch, index = item
    case = FIX[arch]["cases"][index]
    _, _, reps = encoded(arch, index)
    ours = [{int(i): int(v) for i, v in zip(ids, values)} for ids, values in zip(reps.term_ids, reps.term_impacts)]
    assert ours == [{int(i): v for i, v in row.items()} for row in case["impacts"]]


def test_fixtures_record_their_provenance():
    for arch in ARCHS:
        fixture = FIX[arch]
        if fixture is None:
            continue
        assert fixture["environment"]["transformers"] == "4.54.0"
        assert len(fixture["reference"]["commit"]) == 40
        assert {c["k"] for c in fixture["cases"]} == {1, 4, 16}


# -- the real LLaDA tokenizer's special tokens ------------------------------------------------------------------
# GSAI-ML/LLaDA-8B-Instruct's tokenizer_config.json (a public snapshot: monash-yann/dllm-research,
# models/LLaDA-8B-Instruct) names more special tokens than tests/real_arch.py writes: cls_token "[CLS]",
# a model-specific "gmask_token" "[gMASK]", and six additional_special_tokens.
REAL_LLADA_SPECIALS = {126082: "[CLS]", 126083: "[gMASK]", 126340: "<role>", 126341: "</role>",
                       126342: "<|arithmetic_start|>", 126343: "<|arithmetic_end|>", 126344: "<|number_start|>",
                       126345: "<|number_end|>"}
# ``tokenizer.all_special_ids`` minus the mask under transformers 4.54.0 (the reference's pin), measured on the
# folder below: "gmask_token" is not a special-token attribute there, so [gMASK] is no stop token.
REFERENCE_LLADA_STOP_IDS = [126080, 126081, 126082, 126340, 126341, 126342, 126343, 126344, 126345]


def test_stop_set_with_the_real_llada_special_tokens(tmp_path):
    """transformers 5 counts the config's gmask_token ([gMASK], 126083) among all_special_ids, 4.54 does not:
    the stop set follows 4.54, the reference's pin."""
    folder = build_folder("llada", tmp_path / "llada", seed=0, layers=1, hidden=16)
    tokenizer_file = folder / "tokenizer.json"
    data = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    for token in data["added_tokens"]:
        if token["id"] in REAL_LLADA_SPECIALS:
            data["model"]["vocab"].pop(token["content"], None)
            token["content"] = REAL_LLADA_SPECIALS[token["id"]]
            data["model"]["vocab"][token["content"]] = token["id"]
    tokenizer_file.write_text(json.dumps(data), encoding="utf-8")
    extra = [REAL_LLADA_SPECIALS[i] for i in range(126340, 126346)]
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = json.loads((folder / name).read_text(encoding="utf-8"))
        config.update(cls_token="[CLS]", additional_special_tokens=extra)
        if name == "tokenizer_config.json":
            config["gmask_token"] = "[gMASK]"
            for token_id, content in REAL_LLADA_SPECIALS.items():
                config["added_tokens_decoder"][str(token_id)]["content"] = content
        (folder / name).write_text(json.dumps(config), encoding="utf-8")
    model = load_model(folder)
    assert sorted(np.flatnonzero(model.runtime.module.stop_ids.cpu().numpy()).tolist()) == REFERENCE_LLADA_STOP_IDS
