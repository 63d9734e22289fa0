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


# -- N runs with weights (issue 13, item 2) -------------------------------------------------------------------
A = {"q": {"a": 3.0, "b": 1.0}}  # min-max: a 1, b 0
B = {"q": {"b": 10.0, "c": 5.0, "a": 0.0}}  # b 1, c 0.5, a 0
C = {"q": {"c": 2.0}, "p": {"x": 7.0}}  # c 1 (one hit -> 1); x 1


def test_three_runs_with_weights_by_hand():
    fused = fuse([A, B, C], [0.5, 0.3, 0.2])
    assert fused["q"] == pytest.approx({"a": 0.5 * 1 + 0.3 * 0,  # 0.5
                                        "b": 0.5 * 0 + 0.3 * 1,  # 0.3
                                        "c": 0.3 * 0.5 + 0.2 * 1})  # 0.35
    assert list(fused["q"]) == ["a", "c", "b"]
    assert fused["p"] == pytest.approx({"x": 0.2})  # only C has p
    # weights need not sum to 1: the scores are the weighted sums as given; a weight of 0 silences a run
    scaled = fuse([A, B, C], [2.0, 0.0, 1.0])
    assert scaled["q"] == pytest.approx({"a": 2.0, "c": 1.0, "b": 0.0}) and list(scaled["q"]) == ["a", "c", "b"]
    # equal shares by default
    assert fuse([A, B, C])["q"] == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 0.5})


@pytest.mark.parametrize("weights, message", [
    ([0.5, 0.5], "2 weights for 3 runs: give exactly one weight per run"),
    ([0.2, 0.3, 0.4, 0.1], "4 weights for 3 runs"),
    ([0.5, -0.1, 0.6], "weight -0.1 of run 2 must be a finite number >= 0"),
    ([0.5, float("nan"), 0.5], "weight nan of run 2 must be a finite number >= 0"),
    ([float("inf"), 0, 0], "weight inf of run 1"),
    ([0, 0, 0], "all 3 weights are 0"),
    ([0.5, "x", 0.5], "weight 'x' of run 2 is not a number"),
])
def test_bad_weights_are_clear_errors(weights, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        fuse([A, B, C], weights)


def test_check_weights_names_the_runs():
    with pytest.raises(ValueError, match=r"1 weight for 3 runs \(dense, sparse, bm25\)"):
        fusion.check_weights([1.0], 3, ["dense", "sparse", "bm25"])
    with pytest.raises(ValueError, match="weight -1.0 of sparse must be"):
        fusion.check_weights([1.0, -1.0, 1.0], 3, ["dense", "sparse", "bm25"])
    assert fusion.check_weights([1, 0, 2], 3) == [1.0, 0.0, 2.0]


def test_hybrid_alpha_outside_0_1_is_an_error():
    with pytest.raises(ValueError, match=r"alpha 1.5 must be in \[0, 1\]"):
        hybrid(DENSE, SPARSE, alpha=1.5)
    assert hybrid(DENSE, SPARSE, alpha=1.0)["q1"]["a"] == pytest.approx(1.0)


def test_command_with_three_runs_and_weights(tmp_path, capsys):
    paths = [str(write_run(run, tmp_path / f"{name}.trec")) for name, run in (("a", A), ("b", B), ("c", C))]
    out = tmp_path / "fused.trec"
    assert fusion.main(["--runs", *paths, "--weights", "0.5", "0.3", "0.2", "--output", str(out)]) == 0
    assert "fused 3 runs (per-query min-max, weights 0.5, 0.3, 0.2)" in capsys.readouterr().out
    assert out.read_text().splitlines() == [
        "q Q0 a 1 0.500000 diffret-hybrid", "q Q0 c 2 0.350000 diffret-hybrid", "q Q0 b 3 0.300000 diffret-hybrid",
        "p Q0 x 1 0.200000 diffret-hybrid"]
    # no weights: equal shares
    assert fusion.main(["--runs", *paths, "--output", str(out)]) == 0
    assert "weights 0.333333, 0.333333, 0.333333" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--weights", "0.5", "0.5"], "2 weights for 3 runs"),
    (["--weights", "1", "-1", "1"], "must be a finite number >= 0"),
    (["--weights", "0", "0", "0"], "all 3 weights are 0"),
    (["--alpha", "0.3"], "--alpha weights the first of two runs; with 3 runs give --weights, one per run"),
    (["--alpha", "0.3", "--weights", "1", "1", "1"], "not both"),
    (["--method", "rrf", "--weights", "1", "1", "1"], "--weights and --grid are for --method minmax"),
    (["--grid", "0.1"], "--grid needs --qrels"),
    (["--grid", "0.3", "--qrels", "q.txt"], "the grid step must divide 1"),
    (["--grid", "0.5", "--weights", "1", "1", "1", "--qrels", "q.txt"], "--grid chooses the weights"),
])
def test_command_bad_weights_exit_2_with_a_message(tmp_path, capsys, extra, message):
    paths = [str(write_run(run, tmp_path / f"{name}.trec")) for name, run in (("a", A), ("b", B), ("c", C))]
    out = tmp_path / "fused.trec"
    assert fusion.main(["--runs", *paths, "--output", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_command_alpha_for_two_runs_must_be_in_0_1(tmp_path, capsys):
    paths = [str(write_run(run, tmp_path / f"{name}.trec")) for name, run in (("d", DENSE), ("s", SPARSE))]
    assert fusion.main(["--runs", *paths, "--alpha", "1.2", "--output", str(tmp_path / "h.trec")]) == 2
    assert "--alpha 1.2 must be in [0, 1]" in capsys.readouterr().err


def test_weight_grid():
    grid = fusion.weight_grid(3, 0.1)
    assert len(grid) == 66 and grid[0] == (0.0, 0.0, 1.0) and grid[-1] == (1.0, 0.0, 0.0)
    assert all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in grid) and (0.3, 0.3, 0.4) in grid
    assert fusion.weight_grid(2, 0.5) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    with pytest.raises(ValueError, match="must divide 1"):
        fusion.weight_grid(3, 0.3)


def test_grid_search_orders_best_first_and_breaks_ties_toward_equal_weights(tmp_path):
    def score(run_path, qrels):  # stands in for trec_eval: the fused score of "a" (rounded like trec_eval)
        return round(read_run(run_path)["q"].get("a", 0.0), 4)

    table = fusion.grid_search([A, B], tmp_path / "qrels.txt", step=0.5, score=score)
    # a: 1 in A, 0 in B -> its fused score is A's weight
    assert table == [((1.0, 0.0), 1.0), ((0.5, 0.5), 0.5), ((0.0, 1.0), 0.0)]
    flat = fusion.grid_search([A, B], tmp_path / "qrels.txt", step=0.5, score=lambda run, qrels: 0.7)
    assert [weights for weights, _ in flat] == [(0.5, 0.5), (0.0, 1.0), (1.0, 0.0)]  # all tie: equal weights first


def test_grid_command_with_trec_eval(tmp_path, capsys):
    """Two runs, step 0.5, real trec_eval: the run that finds the judged document wins; BEIR qrels are read."""
    good = {"q1": {"rel": 2.0, "x": 1.0, "y": 0.0}}
    bad = {"q1": {"x": 3.0, "y": 2.0, "rel": 1.0, "z": 0.0}}
    paths = [str(write_run(good, tmp_path / "good.trec")), str(write_run(bad, tmp_path / "bad.trec"))]
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\trel\t1\n", encoding="utf-8")
    out = tmp_path / "best.trec"
    assert fusion.main(["--runs", *paths, "--grid", "0.5", "--qrels", str(qrels), "--output", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "1 0\t1.0000" and lines[-1].startswith("fused 2 runs (per-query min-max, weights 1, 0) (best")
    assert read_run(out)["q1"]["rel"] == pytest.approx(1.0)
    assert len(list(tmp_path.iterdir())) == 4  # the two runs, the qrels and the output: no leftovers
