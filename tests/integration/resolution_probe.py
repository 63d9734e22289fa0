"""Print how Pyserini resolves encoder names, with every encoder class replaced by a recording stub.

Run as a script (``python tests/integration/resolution_probe.py off|on [EXTRA_NAME ...]``) by
``test_resolution.py``, once with the start-up hook off and once with it on:

- ``off``: only what Pyserini needs to import here (Java 21 and the offline catalogue guard); nothing of
  the ``diffret`` registration is loaded (checked).
- ``on``: ``pyserini_diffret.integration.setup()``, as the start-up hook does at ``import pyserini``.

Nothing is downloaded or loaded: the classes in ``document_encoder_class_map``/``query_encoder_class_map``,
the encoder classes the commands and searchers name directly, and our lazy classes become stubs that
record ``(class name, args, kwargs)``. For every name it calls the encode command's ``init_encoder``, the
FAISS/hybrid commands' ``init_query_encoder``, ``LuceneImpactSearcher._init_query_encoder_from_str`` and
``FaissSearcher._init_encoder_from_str``, plus each ``--encoder-class`` with a neutral name, and prints
one JSON object (``RESOLUTION {...}``). It also asks ``from_prebuilt_index`` about unknown index names.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys

HUB_NAMES = [
    "castorini/unicoil-msmarco-passage", "castorini/unicoil-noexp-msmarco-passage", "naver/splade-v3",
    "naver/splade-cocondenser-ensembledistil", "naver/efficient-splade-VI-BT-large-query",
    "facebook/dpr-question_encoder-multiset-base", "facebook/dpr-ctx_encoder-multiset-base",
    "castorini/tct_colbert-v2-hnp-msmarco", "castorini/ance-msmarco-passage", "castorini/aggretriever-cocondenser",
    "castorini/dkrr-dpr-nq-retriever", "castorini/bpr-nq-question-encoder", "castorini/cosdpr-distil",
    "sentence-transformers/all-MiniLM-L6-v2", "facebook/contriever-msmarco", "facebook/mcontriever",
    "BAAI/bge-base-en-v1.5", "intfloat/e5-base-v2", "Snowflake/snowflake-arctic-embed-m-v1.5",
    "openai-api/text-embedding-ada-002", "openai/clip-vit-base-patch32", "Qwen/Qwen3-Embedding-0.6B",
    "MrLight/dse-qwen2-2b-mrl-v1", "TIGER-Lab/UniIR", "TIGER-Lab/VLM2Vec-Full", "castorini/slimr-msmarco-passage",
    "bert-base-uncased", "distilbert-base-uncased", "models/plain-bert", "",
]
# Names that contain "diffret" (any case) but are not ours: Pyserini decides, as without the plug-in.
DIFFRET_LOOKALIKES = [
    "some/path/diffret-lab/tiny-bert", "DiffRet-models/splade", "/x/diffretriever/contriever",
    "diffret-lab/unicoil", "diffret-lab/dpr", "DIFFRET", "DiffRet", "diffret-base", "my-diffret", "./diffret/",
    "diffret/sentence-transformers", "diffret_clip", "diffret-dse", "diffret-qwen3", "diffret-uniir", "diffret-mmeb",
    "diffret-tct_colbert", "diffret-ance", "diffret-slim", "diffret-bpr",
]
SEARCHER_KEYWORDS = ["unicoil", "splade", "slim", "dpr", "tct_colbert", "ance", "sentence", "bpr"]
UNKNOWN_INDEXES = ["no-such-prebuilt-index"]
# Catalogue aliases whose targets come from the fetched catalogue (offline: unknown names). Only asked
# offline: online they would start a real download.
ALIAS_INDEXES = ["msmarco-passage-unicoil-d2q", "msmarco-v2-passage-unicoil-0shot"]


def set_up(mode: str) -> None:
    if mode == "on":
        from pyserini_diffret.integration import setup

        setup()
    else:  # what Pyserini itself needs on this machine, and nothing of the registration
        from pyserini_diffret.integration import install_import_hook, offline
        from pyserini_diffret.integration.java import configure_java

        configure_java()
        install_import_hook()
        offline.register()


class _Record:
    def __init__(self, name: str, args: tuple, kwargs: dict) -> None:
        self.value = [name, [repr(a) for a in args], {k: repr(v) for k, v in sorted(kwargs.items())}]


def _stub(name: str):
    def build(*args, **kwargs):
        return _Record(name, args, kwargs)

    build.__name__ = name
    return build


def _is_encoder_class(value) -> bool:
    return (isinstance(value, type) and value.__name__.endswith("Encoder")) or type(value).__name__ == "_LazyClass"


def stub_everything(modules) -> None:
    import pyserini.encode as encode

    for mapping in (encode.document_encoder_class_map, encode.query_encoder_class_map):
        for key, value in list(mapping.items()):
            if value is not None:  # None (an optional package is missing) stays: Pyserini handles it
                mapping[key] = _stub(value.__name__)
    for module in modules:
        for attr, value in list(vars(module).items()):
            if _is_encoder_class(value):
                setattr(module, attr, _stub(value.__name__))


def describe(call):
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = call()
    except Exception as error:  # noqa: BLE001 - an error is a resolution outcome too
        return ["error", type(error).__name__, str(error)]
    return result.value if isinstance(result, _Record) else repr(result)


def main(argv: list[str]) -> None:
    mode, extra = argv[0], argv[1:]
    set_up(mode)
    import importlib

    names = ["pyserini.encode", "pyserini.encode.__main__", "pyserini.search.faiss.__main__",
             "pyserini.search.faiss._searcher", "pyserini.search.lucene._impact_searcher",
             "pyserini.search.hybrid.__main__"]
    modules = [importlib.import_module(name) for name in names]
    encode, encode_main, faiss_main, faiss_searcher, impact_searcher, hybrid_main = modules
    registration = sys.modules.get("pyserini_diffret.integration.registration")
    if mode == "off":
        assert registration is None, "the registration was loaded with the hook off"
    else:
        modules.append(registration)
    pyserini_doc_keys = [k for k in encode.document_encoder_class_map if k != "diffret"]
    pyserini_query_keys = [k for k in encode.query_encoder_class_map if k != "diffret"]
    stub_everything(modules)
    assert hybrid_main.init_query_encoder is faiss_main.init_query_encoder  # the hybrid command's query side

    init_encoder, init_query_encoder = encode_main.init_encoder, faiss_main.init_query_encoder
    impact_from_str = impact_searcher.LuceneImpactSearcher._init_query_encoder_from_str
    faiss_from_str = faiss_searcher.FaissSearcher._init_encoder_from_str

    def document(name, encoder_class=None):
        return lambda: init_encoder(name, encoder_class, device="cpu", pooling="cls", l2_norm=False, prefix=None,
                                    multimodal=False, explicit_truncate=False)

    def query(name, encoder_class=None):
        return lambda: init_query_encoder(name, encoder_class, None, "topics", None, "cpu", 64, "cls", False, None)

    all_names = list(dict.fromkeys(pyserini_doc_keys + pyserini_query_keys + SEARCHER_KEYWORDS + HUB_NAMES
                                   + DIFFRET_LOOKALIKES + ["diffret"] + extra))
    results = {"document-map-keys": pyserini_doc_keys, "query-map-keys": pyserini_query_keys}
    for name in all_names:
        results[f"init_encoder|{name}"] = describe(document(name))
        results[f"init_query_encoder|{name}"] = describe(query(name))
        results[f"impact_from_str|{name}"] = describe(lambda: impact_from_str(name))
        results[f"faiss_from_str|{name}"] = describe(lambda: faiss_from_str(name))
    for key in pyserini_doc_keys + ["diffret"]:
        for name in ["models/plain-bert", "some/path/diffret-lab/tiny-bert"] + extra:
            results[f"init_encoder|{name}|class={key}"] = describe(document(name, key))
    for key in pyserini_query_keys + ["diffret"]:
        for name in ["models/plain-bert", "some/path/diffret-lab/tiny-bert"] + extra:
            results[f"init_query_encoder|{name}|class={key}"] = describe(query(name, key))
    results["impact_from_str|None"] = describe(lambda: impact_from_str(None))
    results["init_query_encoder|None"] = describe(query(None))

    from pyserini_diffret.integration import offline  # noqa: PLC0415 - loaded in both modes

    offline_now = offline._warned
    results["offline"] = offline_now
    searchers = {
        "LuceneImpactSearcher": lambda name: impact_searcher.LuceneImpactSearcher.from_prebuilt_index(name, None),
        "LuceneSearcher": lambda name: importlib.import_module("pyserini.search.lucene").LuceneSearcher
        .from_prebuilt_index(name),
        "FaissSearcher": lambda name: faiss_searcher.FaissSearcher.from_prebuilt_index(name, None),
    }
    for index in UNKNOWN_INDEXES + (ALIAS_INDEXES if offline_now else []):
        for searcher, build in searchers.items():
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    value = repr(build(index))
            except Exception as error:  # noqa: BLE001
                value = ["error", type(error).__name__, str(error)]
            results[f"prebuilt|{searcher}|{index}"] = {"returned": value, "printed": out.getvalue().strip()}
    print("RESOLUTION " + json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(sys.argv[1:])
