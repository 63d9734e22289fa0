"""The Pyserini-shaped encoder classes and their registration in Pyserini's modules."""
from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pytest

from pyserini_diffret.integration import registration
from tests.conftest import run_python
from tests.workflow.fixtures import loaded_model, model_dir, plain_model_dir  # noqa: F401

TEXTS = ["Aspirin reduces the risk of heart attack.", "", "Supersonic flow produces shock waves."]
TITLES = ["Aspirin", None, "Flow"]


def test_document_encoder_outputs(loaded_model):
    from pyserini.encode import DocumentEncoder

    from pyserini_diffret.encoders import DiffRetDocumentEncoder

    encoder = DiffRetDocumentEncoder("unused", model=loaded_model)
    assert isinstance(encoder, DocumentEncoder) and encoder.dimension == loaded_model.hidden_size
    reps = loaded_model.encode_documents(TEXTS, TITLES)
    impact = encoder.encode(texts=TEXTS, titles=TITLES, fp16=False, add_sep=False)
    assert impact == reps.weights
    assert all(type(v) is int for vector in impact for v in vector.values())
    dense = encoder.encode(texts=TEXTS, titles=TITLES, representation="dense")
    assert dense.dtype == np.float32 and dense.shape == (3, loaded_model.hidden_size)
    np.testing.assert_allclose(dense, reps.dense, atol=1e-6)
    slots = encoder.encode(texts=TEXTS, titles=TITLES, representation="slots")
    assert slots.shape == (3, loaded_model.k_doc, loaded_model.hidden_size)
    assert encoder.encode(texts=[None], titles=[None]) == loaded_model.encode_documents([""]).weights
    with pytest.raises(ValueError, match="representation"):
        DiffRetDocumentEncoder(representation="colbert")


def test_max_length_from_pyserini_calls(loaded_model):
    from pyserini_diffret.encoders import DiffRetDocumentEncoder

    encoder = DiffRetDocumentEncoder("unused", model=loaded_model)
    configured = loaded_model.config.max_document_length
    long_text = ["aspirin heart attack risk " * 40]
    try:
        short = encoder.encode(texts=long_text, max_length=4, representation="dense")
        assert loaded_model.config.max_document_length == 4
        encoder.set_max_length(configured)
        encoder.ignore_call_max_length = True  # what the CLI hook does when --max-length was not given
        full = encoder.encode(texts=long_text, max_length=256, representation="dense")
        assert loaded_model.config.max_document_length == configured
        assert not np.allclose(short, full)
        with pytest.raises(ValueError, match="positions"):
            encoder.set_max_length(10_000)
        assert loaded_model.config.max_document_length == configured
    finally:
        loaded_model.config.max_document_length = configured


def test_query_encoders_share_model_and_pass(model_dir):
    from pyserini.encode import QueryEncoder

    from pyserini_diffret.encoders import DiffRetDenseQueryEncoder, DiffRetImpactQueryEncoder
    from pyserini_diffret.shared import shared_model

    dense, impact = DiffRetDenseQueryEncoder(str(model_dir)), DiffRetImpactQueryEncoder(str(model_dir))
    assert isinstance(dense, QueryEncoder) and dense.model is impact.model is shared_model(model_dir, "cpu")
    calls = []
    handle = dense.model.runtime.backbone.body.register_forward_hook(lambda *args: calls.append(1))
    try:
        vector = dense.encode("what reduces heart attack risk")
        weights = impact.encode("what reduces heart attack risk")
    finally:
        handle.remove()
    assert len(calls) == 1  # the second side came from the shared query cache
    reps = dense.model.encode_queries(["what reduces heart attack risk"])
    assert vector.shape == (dense.model.hidden_size,) and vector.dtype == np.float32
    np.testing.assert_allclose(vector, reps.dense[0], atol=1e-6)
    assert weights == reps.weights[0] and all(type(v) is int for v in weights.values())
    batch = dense.encode_batch(["a wing", "a fox"])
    assert batch.shape == (2, dense.model.hidden_size)
    assert dense.encode_slots(["a wing"]).shape == (1, dense.model.k_query, dense.model.hidden_size)


def test_cuda_without_cuda_is_a_clear_error(model_dir):
    import torch

    from pyserini_diffret.shared import shared_model

    assert shared_model(model_dir, "CPU") is shared_model(model_dir, "cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="torch sees no CUDA device; use device='cpu'"):
        shared_model(model_dir, "cuda:0")


def test_onnx_on_cuda_asks_onnxruntime_not_torch(monkeypatch):
    """onnxruntime-gpu beside a CPU-only torch: the ONNX runtime takes --device cuda."""
    import onnxruntime
    import torch

    from pyserini_diffret.runtimes.onnx_runtime import OnnxRuntime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert OnnxRuntime.check_device("cuda") == "cuda:0"
    assert OnnxRuntime.check_device("CUDA:1") == "cuda:1"
    # Pyserini's commands resolve --device with torch first (CPU torch: "cpu"); our ONNX model gets it back.
    assert registration.device_for("diffret", None, "cuda", "cpu") == "cuda:0"
    assert registration.device_for("diffret", None, "cpu", "cpu") == "cpu"
    assert registration.device_for("bert-base-uncased", None, "cuda", "cpu") == "cpu"  # not ours: Pyserini's choice


def test_torch_models_keep_pyserinis_device_fallback(plain_model_dir, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert registration.device_for(str(plain_model_dir), "diffret", "cuda:0", "cpu") == "cpu"


def test_class_maps_put_diffret_last_and_build_lazily(model_dir):
    import pyserini.encode as encode

    # Last: Pyserini's first-substring-match loop meets all of its own keys first (see test_resolution.py).
    documents, queries = list(encode.document_encoder_class_map), list(encode.query_encoder_class_map)
    assert (documents[0], documents[-1], queries[0], queries[-1]) == ("dpr", "diffret", "dkrr", "diffret")
    encoder = encode.document_encoder_class_map["diffret"](model_name=str(model_dir), device="cpu", l2_norm=True)
    assert type(encoder).__name__ == "DiffRetDocumentEncoder" and encoder.device == "cpu"
    query = encode.query_encoder_class_map["diffret"](encoder_dir=str(model_dir), tokenizer_name=None, device="cpu",
                                                       prefix=None, fp16=False)
    assert type(query).__name__ == "DiffRetDenseQueryEncoder" and query.model_name == str(model_dir)


def test_searchers_build_our_encoders_from_names(model_dir, plain_model_dir, tmp_path):
    from pyserini.search.faiss import FaissSearcher
    from pyserini.search.lucene import LuceneImpactSearcher

    from_str = LuceneImpactSearcher._init_query_encoder_from_str
    assert type(from_str("diffret")).__name__ == "DiffRetImpactQueryEncoder"
    assert type(from_str(str(plain_model_dir))).__name__ == "DiffRetImpactQueryEncoder"  # has diffret_config.json
    assert type(from_str(None)).__name__ == "TokFreqQueryEncoder"  # Pyserini's own rule, unchanged
    assert from_str(str(tmp_path)) is None
    assert type(FaissSearcher._init_encoder_from_str(str(model_dir))).__name__ == "DiffRetDenseQueryEncoder"
    assert registration.class_hint(str(plain_model_dir), None) == "diffret"
    assert registration.class_hint(str(tmp_path), None) is None
    assert registration.class_hint(str(plain_model_dir), "auto") == "auto"
    assert int(registration.DEFAULT_MIN_IDF) == 0 and repr(registration.DEFAULT_MIN_IDF) == "0"


PYSERINI = Path(__import__("pyserini").__file__).parent


@pytest.mark.parametrize("module, rewrite, expected", [
    ("encode/__main__.py", registration.rewrite_encode_main,
     ['choices=["diffret", "dpr"', "class_hint(encoder, encoder_class, document_encoder_class_map)",
      "configure_document_encoder(encoder, args"]),
    ("search/faiss/__main__.py", registration.rewrite_faiss_main,
     ['choices=["diffret", ', "class_hint(encoder, encoder_class, query_encoder_class_map)"]),
    ("search/lucene/__main__.py", registration.rewrite_lucene_main,
     ["'--min-idf', type=int, default=_diffret_registration.DEFAULT_MIN_IDF"]),
    ("search/hybrid/__main__.py", registration.rewrite_hybrid_main,
     ["    args = _diffret_registration.parse_hybrid_args(parse_args, parser, commands)"]),
])
def test_source_rewrites_are_small_and_keep_line_numbers(module, rewrite, expected, recwarn):
    source = (PYSERINI / module).read_text(encoding="utf-8")
    rewritten = rewrite(source)
    compile(rewritten, module, "exec")
    assert not [w for w in recwarn if "has changed" in str(w.message)]
    assert rewritten.count("\n") == source.count("\n")
    changed = [line for line in difflib.ndiff(source.splitlines(), rewritten.splitlines()) if line.startswith("+ ")]
    assert len(changed) == len(expected) + 1  # plus the import on the `import argparse` line
    for fragment in expected:
        assert fragment in rewritten


def test_explicit_option_detection():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dimension", type=int, default=768)
    tokens = registration._command_section(["input", "--corpus", "c", "encoder", "--encoder", "x", "--max-len", "9",
                                            "output", "--embeddings", "o"], "encoder", ("input", "output", "encoder"))
    assert tokens == ["--encoder", "x", "--max-len", "9"]
    assert registration.explicit_options(parser, tokens, ["dimension", "max_length"]) == {"max_length"}


def test_hook_switch_leaves_pyserini_untouched():
    code = "import pyserini.encode as e; print('LAST', list(e.document_encoder_class_map)[-1])"
    assert "LAST diffret" in run_python("-c", code).stdout
    # switched off, importing Pyserini loads nothing of ours (offline, Pyserini's own import would fail here)
    code = "import sys, pyserini; print('LOADED', 'pyserini_diffret' in sys.modules)"
    assert "LOADED False" in run_python("-c", code, PYSERINI_DIFFRET_HOOK="0").stdout
