"""In-memory search and trec_eval-style metrics used by model development and the quality benchmark."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pyserini_diffret.train import evaluate as ev

QRELS = {"q1": {"a": 1, "c": 2}, "q2": {"b": 1}}


def test_ndcg_and_recall_by_hand():
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"a": 1.0}}
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ev.ndcg_per_query(run, QRELS)["q1"] == pytest.approx(dcg / ideal)
    assert ev.ndcg_per_query(run, QRELS)["q2"] == 0.0
    assert ev.recall_per_query(run, QRELS, k=2)["q1"] == 0.5
    assert ev.metrics(run, QRELS)["recall@100"] == pytest.approx(0.5)


def test_ties_are_broken_by_docid_descending_as_trec_eval():
    run = {"q2": {"a": 1.0, "b": 1.0}}
    assert ev.ndcg_per_query(run, QRELS, k=1)["q2"] == 1.0  # "b" before "a"


def test_maxsim_search_clamps_negative_slot_maxima():
    q = np.array([[[1.0, 0.0], [0.0, 1.0]]], dtype=np.float32)  # [1, 2, 2]
    d = np.array([[[1.0, 0.0], [0.0, -1.0]], [[0.6, 0.8], [0.6, 0.8]]], dtype=np.float32)
    run = ev.maxsim_search(q, d, ["q"], ["x", "y"])
    assert run["q"]["x"] == pytest.approx(1.0)  # 1 + max(0, 0)
    assert run["q"]["y"] == pytest.approx(1.4)


def test_sparse_search_is_a_dot_product_of_weights():
    run = ev.sparse_search([{"a": 2, "z": 5}], [{"a": 3, "b": 1}, {"b": 4}], ["q"], ["d1", "d2"])
    assert run == {"q": {"d1": 6.0}}


def test_oracle_takes_the_best_configuration_per_query():
    assert ev.oracle([{"q1": 0.2, "q2": 0.9}, {"q1": 0.6, "q2": 0.1}]) == pytest.approx(0.75)
