"""Host-side post-processing: the read-out's pooling, quantisation rules, and the document text rule."""
from __future__ import annotations

import numpy as np

from pyserini_diffret.core.representations import pool_content_scores, quantise
from pyserini_diffret.core.text import join_title


def test_quantisation_rounds_or_truncates_as_the_reference():
    weights = np.array([[0.0, 0.004, 0.005, 0.0151, 0.0149, 1.999, 0.025]], dtype=np.float32)
    content_ids = np.array([[10, 11, 12, 13, 14, 15, 16]])
    (ids,), (rounded,) = quantise(weights, content_ids, 100.0, "round")
    assert ids.tolist() == [13, 14, 15, 16] and rounded.tolist() == [2, 1, 200, 2]  # 2.5 -> 2: half to even
    (ids,), (truncated,) = quantise(weights, content_ids, 100.0, "truncate")
    assert ids.tolist() == [13, 14, 15, 16] and truncated.tolist() == [1, 1, 199, 2]


def test_max_pool_then_quantise_equals_quantise_then_max_pool():
    """The reference quantises each slot and then max-pools; we pool the floats, then quantise once."""
    rng = np.random.default_rng(0)
    slots = rng.random((3, 4, 50), dtype=np.float32) * 3
    for rule, to_int in (("round", np.rint), ("truncate", np.trunc)):
        ids, values = quantise(slots.max(axis=1), np.tile(np.arange(50), (3, 1)), 100.0, rule)
        reference = to_int(slots * np.float32(100)).max(axis=1)
        for row, (i, v) in enumerate(zip(ids, values)):
            assert np.array_equal(reference[row][i], v) and not reference[row][np.setdiff1d(np.arange(50), i)].any()


def _vocabulary_readout(logits: np.ndarray, mask: np.ndarray, terms: int) -> np.ndarray:
    """The reference's read-out over the whole vocabulary, written plainly: per slot the ``terms`` largest
    content-masked ``relu(logit)``, ``log1p``, max over slots."""
    scores = np.where(mask[:, None, :], np.maximum(logits, 0), 0).astype(np.float32)
    pooled = np.zeros(mask.shape, np.float32)
    for b in range(scores.shape[0]):
        for k in range(scores.shape[1]):
            top = np.argsort(-scores[b, k], kind="stable")[:terms]
            pooled[b, top] = np.maximum(pooled[b, top], np.log1p(scores[b, k, top]))
    return pooled


def test_pooling_at_the_content_ids_equals_the_vocabulary_wide_read_out():
    """Per-slot top-k, log1p and the max over slots at the content ids give the reference's impacts: a score
    outside the content mask is zero and adds nothing. Top-k wider than, equal to and narrower than A."""
    rng = np.random.default_rng(1)
    vocab, k = 300, 4
    logits = rng.normal(size=(3, k, vocab)).astype(np.float32)
    allowed = [rng.choice(vocab, size=n, replace=False) for n in (40, 7, 0)]
    mask = np.zeros((3, vocab), bool)
    content_ids = np.full((3, 40), -1)
    for row, ids in enumerate(allowed):
        mask[row, ids] = True
        content_ids[row, :len(ids)] = np.sort(ids)
    valid = content_ids >= 0
    gathered = np.take_along_axis(logits, np.where(valid, content_ids, 0)[:, None, :].repeat(k, 1), axis=2)
    scores = np.where(valid[:, None, :], np.maximum(gathered, 0), 0).astype(np.float32)
    for terms in (256, 40, 7, 3):
        ids, impacts = quantise(pool_content_scores(scores, terms), content_ids, 100.0)
        expected_ids, expected = quantise(_vocabulary_readout(logits, mask, terms), np.tile(np.arange(vocab), (3, 1)), 100.0)
        for got, want in zip(ids, expected_ids):
            assert got.tolist() == want.tolist(), terms
        for got, want in zip(impacts, expected):
            assert got.tolist() == want.tolist(), terms
    assert len(ids[2]) == 0  # a text without content words gets no impacts


def test_pooling_keeps_the_top_k_of_each_slot():
    scores = np.array([[[0.5, 0.0, 2.0, 1.0], [3.0, 0.1, 0.0, 0.2]]], dtype=np.float32)
    pooled = pool_content_scores(scores, 2)
    np.testing.assert_allclose(pooled, np.log1p([[3.0, 0.0, 2.0, 1.0]]), rtol=1e-6)


def test_document_text_joins_title_and_text_or_keeps_the_one_there_is():
    assert join_title("Aspirin", "It thins blood.") == "Aspirin. It thins blood."
    assert join_title("Aspirin", "") == "Aspirin"  # the reference keeps the title alone
    assert join_title(None, "It thins blood.") == join_title("", "It thins blood.") == "It thins blood."
