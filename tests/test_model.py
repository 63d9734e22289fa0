"""load_model and the encode API across backbone families (torch runtime)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from pyserini_diffret import load_model
from pyserini_diffret.core.readout import kept_slots
from pyserini_diffret.core.representations import maxsim, single_vectors

TEXTS = [
    "Aspirin reduces the risk of heart attack in adults with diabetes.",
    "Supersonic flow produces shock waves.",
    "bone",
    "Vitamin D deficiency is associated with bone fractures and weak muscles, " * 3,
]
FAMILIES = ["mlm", "dream", "llada", "ar"]


def _count_body_calls(model):
    body = model.runtime.backbone.body
    calls = []
    handle = body.register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_types_and_unit_slots(tiny_models, name):
    model = tiny_models[name]
    reps = model.encode_documents(TEXTS)
    n, k, h = len(TEXTS), model.k_doc, model.hidden_size
    assert reps.dense.shape == (n, h) and reps.dense.dtype == np.float32
    assert reps.slots.shape == (n, k, h) and reps.slots.dtype == np.float32
    norms = np.linalg.norm(reps.slots, axis=-1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    np.testing.assert_allclose(reps.dense, single_vectors(reps.slots), rtol=1e-6)
    assert reps.weights == reps.impact  # the former name
    assert sum(bool(impact) for impact in reps.impact) >= 2  # not vacuous: real terms to check below
    for impact in reps.impact:
        assert all(type(v) is int and v > 0 for v in impact.values())
        assert all(type(t) is str and t for t in impact)


@pytest.mark.parametrize("name", ["mlm", "dream", "llada"])
@pytest.mark.parametrize("k", [1, 4, 16])
def test_one_backbone_pass_per_batch_whatever_k(tiny_model_dirs, name, k):
    model = load_model(tiny_model_dirs[name], backbone=name, k_query=k, k_doc=k, batch_size=8)
    calls, handle = _count_body_calls(model)
    try:
        model.encode_documents(TEXTS)
        model.encode_queries(TEXTS)
    finally:
        handle.remove()
    assert len(calls) == 2


@pytest.mark.parametrize("k", [1, 4, 8])
def test_autoregressive_baseline_takes_k_passes(tiny_model_dirs, k):
    model = load_model(tiny_model_dirs["ar"], backbone="ar", k_query=k, k_doc=k, batch_size=8)
    model.runtime.backbone.__dict__["_stop_ids"] = torch.tensor([-1])  # never stop early: count every step
    calls, handle = _count_body_calls(model)
    try:
        model.encode_documents(TEXTS)
    finally:
        handle.remove()
    assert len(calls) == k


@pytest.mark.parametrize("name", FAMILIES)
def test_alone_equals_batched(tiny_models, name):
    model = tiny_models[name]
    batched = model.encode_documents(TEXTS, batch_size=4)
    for i, text in enumerate(TEXTS):
        alone = model.encode_documents([text])
        np.testing.assert_allclose(alone.slots[0], batched.slots[i], atol=1e-5)
        np.testing.assert_allclose(alone.dense[0], batched.dense[i], atol=1e-5)
        assert alone.weights[0] == batched.weights[i]


def test_titles_are_joined_like_the_reference(tiny_models):
    model = tiny_models["mlm"]
    assert model.document_texts(["body", "text"], ["Title", ""]) == ["Title. body", "text"]
    a = model.encode_documents(["body"], titles=["Title"])
    b = model.encode_documents(["Title. body"])
    assert a.weights == b.weights
    np.testing.assert_allclose(a.slots, b.slots, atol=1e-6)


def test_maxsim_matches_brute_force():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(4, 8)).astype(np.float32)
    d = rng.normal(size=(5, 3, 8)).astype(np.float32)
    expected = [sum(max(0.0, max(float(qi @ dj) for dj in doc)) for qi in q) for doc in d]
    np.testing.assert_allclose(maxsim(q, d), expected, rtol=1e-5)


def test_stop_truncation_rule():
    vocab, stop = 6, torch.zeros(6, dtype=torch.bool)
    stop[[0, 5]] = True
    logits = torch.full((3, 4, vocab), -1.0)
    argmax = torch.tensor([[1, 2, 5, 3], [0, 2, 3, 4], [1, 2, 3, 4]])
    logits.scatter_(2, argmax[..., None], 1.0)
    keep = kept_slots(logits, stop, torch.tensor(True))
    assert keep.tolist() == [[True, True, False, False], [True, True, True, True], [True, True, True, True]]
    assert kept_slots(logits, stop, torch.tensor(False)).all()


def test_truncated_slots_are_zero_and_excluded_from_the_mean():
    slots = np.zeros((1, 3, 2), np.float32)
    slots[0, 0] = [1, 0]
    slots[0, 1] = [0, 1]
    np.testing.assert_allclose(single_vectors(slots)[0], [0.5, 0.5])


def test_empty_inputs(tiny_models):
    model = tiny_models["dream"]
    empty = model.encode_queries([])
    assert len(empty) == 0 and empty.slots.shape == (0, model.k_query, model.hidden_size)
    reps = model.encode_queries([""])
    assert reps.weights == [{}]  # no words, so no term may carry weight
    assert reps.dense.shape == (1, model.hidden_size) and np.isfinite(reps.dense).all()


def test_bad_inputs_get_clear_errors(tiny_models, tiny_model_dirs, tmp_path):
    model = tiny_models["mlm"]
    with pytest.raises(TypeError, match="single string"):
        model.encode_queries("a query")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        model.encode_queries(["ok", 3])
    with pytest.raises(ValueError, match="unknown backbone 'gpt'"):
        load_model(tiny_model_dirs["mlm"], backbone="gpt")
    with pytest.raises(ValueError, match="k_query must be an integer >= 1"):
        load_model(tiny_model_dirs["mlm"], backbone="mlm", k_query=0)
    with pytest.raises(FileNotFoundError, match="neither a local model folder nor a registered name"):
        load_model(tmp_path / "missing")
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dirs["mlm"] / name, no_tokenizer / name)
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        load_model(no_tokenizer, backbone="mlm")
    with pytest.raises(ValueError, match="has no mask token '<\\|mask\\|>'"):
        load_model(tiny_model_dirs["ar"], backbone="dream")
    with pytest.raises(ValueError, match="cannot tell the backbone"):
        load_model(tiny_model_dirs["dream"])


def test_real_weights_splade_tiny(splade_tiny_dir, monkeypatch):
    model = load_model(splade_tiny_dir)
    assert model.config.backbone == "mlm" and model.hidden_size == 128 and model.vocab_size == 30522
    reps = model.encode_documents(TEXTS, titles=["Aspirin", "", "", "Vitamin D"])
    norms = np.linalg.norm(reps.slots, axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    alone = model.encode_documents([TEXTS[1]])
    np.testing.assert_allclose(alone.slots[0], reps.slots[1], atol=1e-5)
    # Zero-shot, splade-tiny's logits at mask slots are negative for the text's own words: the sparse
    # channel is empty until fine-tuning (DESIGN.md section 5). The encoder reports that faithfully.
    assert reps.impact == [{}] * len(TEXTS) and all(ids.size == 0 for ids in reps.term_ids)
    # The emptiness comes from the content mask (only the text's own words), not from a broken read-out:
    # with the whole vocabulary allowed, the positive logits at the mask slots give integer impacts.
    every_id = np.arange(model.vocab_size)
    monkeypatch.setattr(model.content, "ids", lambda texts: np.tile(every_id, (len(texts), 1)))
    unrestricted = model.encode_documents(TEXTS, titles=["Aspirin", "", "", "Vitamin D"])
    assert all(unrestricted.impact)
    assert all(type(v) is int and v > 0 for impact in unrestricted.impact for v in impact.values())


def test_stop_truncation_needs_the_rule_the_model_was_loaded_with(tiny_model_dirs):
    """A fine-tuned-style load has no stop-token rule (no whole-vocabulary head); turning the setting on
    afterwards is refused with the way out, not silently ignored."""
    model = load_model(tiny_model_dirs["mlm"], backbone="mlm", runtime="torch")
    assert not model.runtime.module.stop_rule
    model.config.stop_truncation = True
    with pytest.raises(ValueError, match="load it with stop_truncation=True"):
        model.encode_queries(["bone fractures"])
