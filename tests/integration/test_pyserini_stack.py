"""The Pyserini/Lucene stack this package relies on, driven with hand-made vectors.

Impact index (JsonVectorCollection, pretokenized), LuceneImpactSearcher, FAISS index+docid with
FaissSearcher, HybridSearcher and trec_eval, all with JAVA_HOME unset (see tests/conftest.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_python

DOCS = {
    "d1": {"Ġfox": 3, "##ing": 2, "café": 5},
    "d2": {"Ġfox": 1, "naïve": 4},
    "d3": {"run": 7, "##ing": 1, "▁x": 2},
}
QUERIES = {"q1": {"Ġfox": 2, "##ing": 3}, "q2": {"naïve": 1, "▁x": 5}}
EXPECTED_SPARSE = {"q1": {"d1": 12.0, "d3": 3.0, "d2": 2.0}, "q2": {"d3": 10.0, "d2": 4.0}}
DOC_VECTORS = {"d1": [1.0, 0.0, 0.0, 0.0], "d2": [0.0, 1.0, 0.0, 0.0], "d3": [0.5, 0.5, 0.5, 0.5]}
QUERY_VECTORS = {"q1": [0.2, 0.1, 0.0, 0.0], "q2": [0.0, 0.0, 1.0, 1.0]}


class DictEncoder:
    """A query encoder whose answers are given: query text -> representation."""

    def __init__(self, table):
        self.table = table

    def encode(self, query):
        return self.table[query]


@pytest.fixture(scope="module")
def impact_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("impact")
    (root / "docs").mkdir()
    with open(root / "docs" / "docs.jsonl", "w", encoding="utf-8") as f:
        for docid, vector in DOCS.items():
            f.write(json.dumps({"id": docid, "contents": "", "vector": vector}, ensure_ascii=False) + "\n")
    run_python(
        "-m", "pyserini.index.lucene", "--collection", "JsonVectorCollection", "--input", str(root / "docs"),
        "--index", str(root / "index"), "--generator", "DefaultLuceneDocumentGenerator", "--impact",
        "--pretokenized", "--threads", "1",
    )
    return root / "index"


@pytest.fixture(scope="module")
def faiss_index(tmp_path_factory):
    import faiss

    root = tmp_path_factory.mktemp("faiss")
    index = faiss.IndexFlatIP(4)
    index.add(np.array(list(DOC_VECTORS.values()), dtype=np.float32))
    faiss.write_index(index, str(root / "index"))
    (root / "docid").write_text("\n".join(DOC_VECTORS) + "\n")
    return root


def test_impact_index_scores_exactly(impact_index):
    from pyserini.search.lucene import LuceneImpactSearcher

    searcher = LuceneImpactSearcher(str(impact_index), DictEncoder(QUERIES), min_idf=-1)
    for qid, expected in EXPECTED_SPARSE.items():
        hits = searcher.search(qid, k=10)
        assert {hit.docid: hit.score for hit in hits} == pytest.approx(expected)
        assert [hit.docid for hit in hits] == list(expected)


def test_impact_index_keeps_tokens_verbatim(impact_index):
    from pyserini.index.lucene import LuceneIndexReader

    reader = LuceneIndexReader(str(impact_index))
    terms = {term.term for term in reader.terms()}
    assert {"Ġfox", "##ing", "café", "naïve", "▁x", "run"} <= terms


def test_faiss_searcher_inner_product(faiss_index):
    from pyserini.search.faiss import FaissSearcher

    encoder = DictEncoder({k: np.array(v, dtype=np.float32) for k, v in QUERY_VECTORS.items()})
    searcher = FaissSearcher(str(faiss_index), encoder)
    hits = searcher.search("q2", k=3)
    assert [hit.docid for hit in hits][0] == "d3"
    assert hits[0].score == pytest.approx(1.0)


def test_hybrid_and_trec_eval(impact_index, faiss_index, tmp_path):
    from pyserini.search.faiss import FaissSearcher
    from pyserini.search.hybrid import HybridSearcher
    from pyserini.search.lucene import LuceneImpactSearcher

    dense = FaissSearcher(str(faiss_index), DictEncoder({k: np.array(v, dtype=np.float32) for k, v in QUERY_VECTORS.items()}))
    sparse = LuceneImpactSearcher(str(impact_index), DictEncoder(QUERIES), min_idf=-1)
    hybrid = HybridSearcher(dense, sparse)
    hits = hybrid.search("q1", k0=3, k=3, alpha=0.5)
    scores = {hit.docid: hit.score for hit in hits}
    # alpha * sparse + dense; every doc is in both lists here.
    assert scores["d1"] == pytest.approx(0.5 * 12 + 0.2)
    assert scores["d2"] == pytest.approx(0.5 * 2 + 0.1)

    run = tmp_path / "run.trec"
    with open(run, "w") as f:
        for rank, hit in enumerate(hits, start=1):
            f.write(f"q1 Q0 {hit.docid} {rank} {hit.score:.6f} hybrid\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\nq1 0 d2 0\n")
    out = run_python("-m", "pyserini.eval.trec_eval", "-c", "-m", "recip_rank", str(qrels), str(run)).stdout
    line = next(line for line in out.splitlines() if line.startswith("recip_rank"))
    assert float(line.split()[-1]) == pytest.approx(1.0)
