"""Host-side post-processing: quantisation rules, and the document text rule."""
from __future__ import annotations

import numpy as np

from pyserini_diffret.core.representations import quantise
from pyserini_diffret.core.text import join_title


def test_quantisation_rounds_or_truncates_as_the_reference():
    weights = np.array([[0.0, 0.004, 0.005, 0.0151, 0.0149, 1.999, 0.025]], dtype=np.float32)
    (ids,), (rounded,) = quantise(weights, 100.0, "round")
    assert ids.tolist() == [3, 4, 5, 6] and rounded.tolist() == [2, 1, 200, 2]  # 2.5 -> 2: half to even
    (ids,), (truncated,) = quantise(weights, 100.0, "truncate")
    assert ids.tolist() == [3, 4, 5, 6] and truncated.tolist() == [1, 1, 199, 2]


def test_max_pool_then_quantise_equals_quantise_then_max_pool():
    """The reference quantises each slot and then max-pools; we pool the floats, then quantise once."""
    rng = np.random.default_rng(0)
    slots = rng.random((3, 4, 50), dtype=np.float32) * 3
    for rule, to_int in (("round", np.rint), ("truncate", np.trunc)):
        ids, values = quantise(slots.max(axis=1), 100.0, rule)
        reference = to_int(slots * np.float32(100)).max(axis=1)
        for row, (i, v) in enumerate(zip(ids, values)):
            assert np.array_equal(reference[row][i], v) and not reference[row][np.setdiff1d(np.arange(50), i)].any()


def test_document_text_joins_title_and_text_or_keeps_the_one_there_is():
    assert join_title("Aspirin", "It thins blood.") == "Aspirin. It thins blood."
    assert join_title("Aspirin", "") == "Aspirin"  # the reference keeps the title alone
    assert join_title(None, "It thins blood.") == join_title("", "It thins blood.") == "It thins blood."
