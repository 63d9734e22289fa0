"""The one TREC run writer/reader (workflow/trec.py) used by run, search_multi, fusion and the benchmarks."""
from __future__ import annotations

import numpy as np
import pytest

from pyserini_diffret.workflow import fusion, trec
from pyserini_diffret.workflow.multivector import Hit


def test_scores_are_ranked_ties_by_docid_and_cut_at_k(tmp_path):
    path = trec.write_run({"q2": {"b": 1.0, "a": 1.0, "c": 2.5}, "q1": {"z": 0.1234567}}, tmp_path / "r" / "x.trec",
                          "tag", k=2)
    assert path.read_text(encoding="utf-8").splitlines() == [
        "q2 Q0 c 1 2.500000 tag", "q2 Q0 a 2 1.000000 tag", "q1 Q0 z 1 0.123457 tag"]  # queries in run order


def test_ranked_hits_keep_their_order(tmp_path):
    hits = [Hit("d9", np.float32(0.5)), Hit("d1", 0.5), Hit("d5", 0.25)]  # ties in corpus order, as searched
    path = trec.write_run({"q": hits, "p": [("x", 3), ("y", 1)]}, tmp_path / "m.trec", "diffret-multi", 2)
    assert path.read_text(encoding="utf-8") == ("q Q0 d9 1 0.500000 diffret-multi\nq Q0 d1 2 0.500000 diffret-multi\n"
                                                "p Q0 x 1 3.000000 diffret-multi\np Q0 y 2 1.000000 diffret-multi\n")
    assert trec.read_run(path) == {"q": {"d9": 0.5, "d1": 0.5}, "p": {"x": 3.0, "y": 1.0}}


def test_reader_reports_file_and_line(tmp_path):
    bad = tmp_path / "bad.trec"
    bad.write_text("q Q0 d 1 0.5 t\nq Q0 e 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.trec:2"):
        trec.read_run(bad)


def test_fusion_uses_the_same_functions():
    assert fusion.write_run is trec.write_run and fusion.read_run is trec.read_run
