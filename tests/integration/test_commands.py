"""Pyserini's own commands with ``--encoder diffret``, end to end on the sample collection (subprocesses).

The model folders are tiny random models with a ``diffret_config.json`` (tests/workflow/fixtures.py), which
is what makes ``--encoder DIR`` ours; ``plain_model_dir`` also runs through ``--encoder-class diffret``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pyserini_diffret.registry import packaged_model_dir
from pyserini_diffret.workflow.collection import read_qrels, read_topics, write_topics_tsv, write_trec_qrels
from pyserini_diffret.workflow.fusion import hybrid, read_run
from tests.conftest import run_python
from tests.workflow.fixtures import encoded_sample, model_dir, plain_model_dir, sample  # noqa: F401


@pytest.fixture(scope="module")
def work(tmp_path_factory, sample):
    root = tmp_path_factory.mktemp("commands")
    write_topics_tsv(read_topics(sample[1]), root / "topics.tsv")
    write_trec_qrels(read_qrels(sample[2]), root / "qrels.txt")
    return root


def encode(corpus, output, encoder, *extra_output, encoder_class=None):
    chosen = ["--encoder-class", encoder_class] if encoder_class else []
    return run_python("-m", "pyserini.encode", "input", "--corpus", str(corpus), "--fields", "title", "text",
                      "output", "--embeddings", str(output), *extra_output,
                      "encoder", *chosen, "--encoder", str(encoder), "--fields", "title", "text",
                      "--batch", "32", "--device", "cpu")


def assert_runs_close(a, b, tol=1e-5):
    assert a.keys() == b.keys()
    for qid in a:
        assert a[qid].keys() == b[qid].keys(), qid
        assert a[qid] == pytest.approx(b[qid], abs=tol), qid


def run_lines(path):
    return [line.split() for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def impact_index(work, sample, plain_model_dir, encoded_sample):
    vectors = work / "impact-vectors"
    encode(sample[0], vectors, plain_model_dir, encoder_class="diffret")
    lines = [json.loads(line) for line in (vectors / "embeddings.jsonl").read_text().splitlines()]
    ours = [json.loads(line) for line in (encoded_sample / "impact" / "part-00000.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [line["id"] for line in ours]
    assert [line["vector"] for line in lines] == [line["vector"] for line in ours]  # same impact vectors
    run_python("-m", "pyserini.index.lucene", "--collection", "JsonVectorCollection", "--input", str(vectors),
               "--index", str(work / "impact-index"), "--generator", "DefaultLuceneDocumentGenerator",
               "--impact", "--pretokenized", "--threads", "1")
    return work / "impact-index"


@pytest.fixture(scope="module")
def dense_index(work, sample, model_dir, encoded_sample):
    import faiss

    folder = work / "dense-index"
    encode(sample[0], folder, model_dir, "--to-faiss")  # no --dimension: taken from the model
    index = faiss.read_index(str(folder / "index"))
    assert index.ntotal == 40 and index.d == 32
    assert (folder / "docid").read_text() == (encoded_sample / "dense" / "docid").read_text()
    ours = faiss.read_index(str(encoded_sample / "dense" / "index"))
    np.testing.assert_allclose(index.reconstruct_n(0, 40), ours.reconstruct_n(0, 40), atol=1e-5)
    return folder


@pytest.fixture(scope="module")
def sparse_run(work, impact_index, model_dir) -> Path:
    """``pyserini.search.lucene --impact --encoder diffret`` on the sample (built once per module)."""
    out = work / "sparse.run"
    run_python("-m", "pyserini.search.lucene", "--index", str(impact_index), "--topics", str(work / "topics.tsv"),
               "--output", str(out), "--impact", "--encoder", str(model_dir), "--hits", "1000")
    return out


@pytest.fixture(scope="module")
def dense_run(work, dense_index, model_dir) -> Path:
    """``pyserini.search.faiss --encoder diffret`` on the sample (built once per module)."""
    out = work / "dense.run"
    run_python("-m", "pyserini.search.faiss", "--index", str(dense_index), "--topics", str(work / "topics.tsv"),
               "--encoder", str(model_dir), "--output", str(out), "--hits", "1000")
    return out


def test_sparse_search(work, impact_index, model_dir, sparse_run):
    out = sparse_run
    batched = work / "sparse-batched.run"
    run_python("-m", "pyserini.search.lucene", "--index", str(impact_index), "--topics", str(work / "topics.tsv"),
               "--output", str(batched), "--impact", "--encoder", str(model_dir), "--hits", "1000",
               "--batch-size", "8", "--threads", "2")
    assert_runs_close(read_run(out), read_run(batched))
    lines = run_lines(out)
    assert {line[0] for line in lines} == set(read_topics(work / "topics.tsv"))
    assert all(line[1] == "Q0" and float(line[4]) > 0 for line in lines)


def test_min_idf_default_keeps_every_term_for_diffret_only(impact_index, model_dir):
    from pyserini.search.lucene import LuceneImpactSearcher

    from pyserini_diffret.integration.registration import DEFAULT_MIN_IDF

    assert LuceneImpactSearcher(str(impact_index), str(model_dir)).min_idf == -1
    assert LuceneImpactSearcher(str(impact_index), str(model_dir), min_idf=0).min_idf == 0
    assert LuceneImpactSearcher(str(impact_index), str(model_dir), DEFAULT_MIN_IDF).min_idf == -1
    assert LuceneImpactSearcher(str(impact_index), None, DEFAULT_MIN_IDF).min_idf == 0  # others: Pyserini's 0


def test_dense_search_with_and_without_hook(work, dense_index, plain_model_dir, dense_run):
    out, plain = dense_run, work / "dense-plain.run"
    run_python("-m", "pyserini_diffret.search_faiss", "--index", str(dense_index), "--topics",
               str(work / "topics.tsv"), "--encoder-class", "diffret", "--encoder", str(plain_model_dir),
               "--output", str(plain), "--hits", "1000", PYSERINI_DIFFRET_HOOK="0")
    assert len(run_lines(out)) == 12 * 40
    assert_runs_close(read_run(out), read_run(plain))


def hybrid_command(dense_index, impact_index, model_dir, topics, out, *fusion):
    return run_python("-m", "pyserini.search.hybrid", "dense", "--index", str(dense_index), "--encoder",
                      str(model_dir), "sparse", "--index", str(impact_index), "--impact", "--encoder", str(model_dir),
                      "fusion", "--alpha", "0.5", *fusion, "run", "--topics", topics, "--output", str(out))


def ndcg10(qrels, run) -> float:
    evaluation = run_python("-m", "pyserini.eval.trec_eval", "-c", "-m", "ndcg_cut.10", qrels, str(run)).stdout
    (line,) = [line for line in evaluation.splitlines() if line.startswith("ndcg_cut_10") and "all" in line]
    return float(line.split()[-1])


def test_hybrid_fusion_and_trec_eval(work, impact_index, dense_index, model_dir, sparse_run, dense_run):
    topics, qrels = str(work / "topics.tsv"), str(work / "qrels.txt")
    out = work / "hybrid.run"
    proc = hybrid_command(dense_index, impact_index, model_dir, topics, out)  # the literal command, no flag
    assert "hybrid fusion: per-query min-max" in proc.stderr
    assert {line[0] for line in run_lines(out)} == set(read_topics(topics))
    run_python("-m", "pyserini.fusion", "--runs", str(dense_run), str(sparse_run),
               "--output", str(work / "rrf.run"), "--method", "rrf")
    assert len(run_lines(work / "rrf.run")) > 0
    paper = work / "paper.run"
    run_python("-m", "pyserini_diffret.fusion", "--runs", str(dense_run), str(sparse_run),
               "--output", str(paper), "--alpha", "0.5")
    expected = hybrid(read_run(dense_run), read_run(sparse_run), 0.5)
    assert_runs_close(read_run(paper), expected)
    # Pyserini's hybrid command with our model, no --normalization: the paper's fusion of the same two lists
    assert abs(ndcg10(qrels, out) - ndcg10(qrels, paper)) <= 0.02
    # the same scores, up to the run files' 6 decimals (the tiny model's dense scores differ by ~1e-4 only,
    # so a rounding of 5e-7 moves their min-max values by up to ~0.005)
    assert_runs_close(read_run(out), expected, tol=5e-3)


def test_hybrid_no_normalization_is_pyserinis_raw_sum(work, impact_index, dense_index, model_dir, sparse_run,
                                                      dense_run):
    from types import SimpleNamespace

    from pyserini.search.hybrid import HybridSearcher

    raw = HybridSearcher._hybrid_results.__wrapped__  # Pyserini's own, without the plug-in
    out = work / "hybrid-raw.run"
    proc = hybrid_command(dense_index, impact_index, model_dir, str(work / "topics.tsv"), out, "--no-normalization")
    assert "raw scores (--no-normalization)" in proc.stderr
    dense, sparse = read_run(dense_run), read_run(sparse_run)
    hits = lambda docs: [SimpleNamespace(docid=d, score=s) for d, s in docs.items()]  # noqa: E731
    expected = {qid: {hit.docid: hit.score for hit in raw(hits(dense[qid]), hits(sparse.get(qid, {})), 0.5, 1000)}
                for qid in dense}
    assert_runs_close(read_run(out), expected, tol=1e-4)


def test_run_command_pyserini_layout_with_empty_document(tmp_path, model_dir, sample):
    corpus = tmp_path / "collection"
    corpus.mkdir()
    docs = [json.loads(line) for line in Path(sample[0]).read_text().splitlines()]
    with open(corpus / "docs.jsonl", "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"id": doc["_id"], "contents": f"{doc['title']}. {doc['text']}"}) + "\n")
        f.write(json.dumps({"id": "empty", "contents": ""}) + "\n")
    write_topics_tsv(read_topics(sample[1]), tmp_path / "topics.tsv")
    write_trec_qrels(read_qrels(sample[2]), tmp_path / "qrels.txt")
    out = tmp_path / "out"
    proc = run_python("-m", "pyserini_diffret.run", "--corpus", str(corpus), "--queries", str(tmp_path / "topics.tsv"),
                      "--qrels", str(tmp_path / "qrels.txt"), "--model", str(model_dir), "--output", str(out), "--quiet")
    assert "accounting: read 41, encoded 41, written 41, empty sparse vectors 1, skipped 0" in proc.stdout
    assert "Lucene: indexed 40, empty impact vectors (not in Lucene, in FAISS) 1" in proc.stdout
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["metrics"]) == {"sparse", "dense", "dense-multi", "hybrid", "hybrid-multi", "bm25", "hybrid+bm25"}
    for values in summary["metrics"].values():
        assert set(values) == {"nDCG@10", "MRR@10", "R@100", "R@1000"} and 0 <= values["nDCG@10"] <= 1
    assert "| hybrid |" in (out / "metrics.md").read_text()
    dense_docs = {line[2] for line in run_lines(out / "runs" / "dense.trec")}
    assert "empty" in dense_docs  # an empty impact vector still leaves the document in the dense index
    assert "empty" not in {line[2] for line in run_lines(out / "runs" / "sparse.trec")}
    # a second run reuses the encoding and the index
    again = run_python("-m", "pyserini_diffret.run", "--corpus", str(corpus), "--queries", str(tmp_path / "topics.tsv"),
                       "--qrels", str(tmp_path / "qrels.txt"), "--model", str(model_dir), "--output", str(out),
                       "--quiet")
    assert "already complete" in again.stdout and "Lucene index up to date" in again.stdout
    assert json.loads((out / "metrics.json").read_text())["metrics"] == summary["metrics"]


@pytest.mark.skipif(not packaged_model_dir("diffret").is_dir(), reason="the embedded default model is not built yet")
def test_literal_default_model_commands(work, sample):
    folder = work / "default-dense"
    encode(sample[0], folder, "diffret", "--to-faiss")
    out = work / "default.run"
    run_python("-m", "pyserini.search.faiss", "--index", str(folder), "--topics", str(work / "topics.tsv"),
               "--encoder", "diffret", "--output", str(out), "--hits", "1000")
    assert len(run_lines(out)) == 12 * 40
