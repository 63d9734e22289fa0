"""The paper's fusion: per-query min-max over each list's top-k, weighted sum, missing = 0."""
from __future__ import annotations

import pytest

from pyserini_diffret.workflow import fusion
from pyserini_diffret.workflow.fusion import fuse, hybrid, min_max, read_run, write_run

DENSE = {"q1": {"a": 0.9, "b": 0.5, "c": 0.1}, "q2": {"x": 2.0}}
SPARSE = {"q1": {"b": 30.0, "d": 20.0, "a": 10.0}, "q3": {"y": 1.0, "z": 0.0}}


def test_min_max_over_top_depth():
    assert min_max({"a": 4.0, "b": 2.0, "c": 0.0}) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert min_max({"a": 4.0, "b": 2.0, "c": 0.0}, depth=2) == {"a": 1.0, "b": 0.0}
    assert min_max({"a": 3.0}) == {"a": 1.0}  # one hit (or all equal) -> 1
    assert min_max({}) == {}


def test_hybrid_matches_the_formula():
    fused = hybrid(DENSE, SPARSE, alpha=0.5)
    q1 = fused["q1"]
    assert q1["a"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert q1["b"] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert q1["c"] == pytest.approx(0.0)  # bottom of dense, missing from sparse
    assert q1["d"] == pytest.approx(0.5 * 0.5)  # missing from dense counts 0
    assert list(q1) == ["b", "a", "d", "c"]
    assert fused["q2"] == {"x": 0.5} and fused["q3"] == {"y": 0.5, "z": 0.0}
    weighted = hybrid(DENSE, SPARSE, alpha=0.8)
    assert weighted["q1"]["a"] == pytest.approx(0.8)


def test_fuse_many_runs_and_ties():
    runs = [{"q": {"a": 1.0, "b": 0.0}}, {"q": {"b": 1.0, "a": 0.0}}, {"q": {"c": 5.0}}]
    fused = fuse(runs)
    assert list(fused["q"]) == ["a", "b", "c"]  # a and b tie; broken by id
    assert fused["q"]["c"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        fuse(runs, [0.5, 0.5])


def test_run_files_round_trip_and_command(tmp_path):
    dense, sparse = write_run(DENSE, tmp_path / "d.trec"), write_run(SPARSE, tmp_path / "s.trec")
    assert read_run(dense) == DENSE
    assert fusion.main(["--runs", str(dense), str(sparse), "--output", str(tmp_path / "h.trec")]) == 0
    fused = read_run(tmp_path / "h.trec")
    expected = hybrid(DENSE, SPARSE)
    assert fused.keys() == expected.keys()
    for qid in fused:
        assert fused[qid] == pytest.approx(expected[qid], abs=1e-6)
    first = (tmp_path / "h.trec").read_text().splitlines()[0].split()
    assert first[:4] == ["q1", "Q0", "b", "1"] and first[5] == "diffret-hybrid"
