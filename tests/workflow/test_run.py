"""``python -m pyserini_diffret.run`` (in process): the default output layout, reuse, --overwrite, and inputs
that must stop it before any Java is started. A tiny random model; the sample collection and a smaller
second collection built from it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyserini_diffret.workflow import fusion, trec
from pyserini_diffret.workflow.run import BM25_WEIGHTS, RUN_NAMES, main
from tests.workflow.fixtures import model_dir, sample  # noqa: F401

QUIET = ["--quiet", "--threads", "1", "--hits", "100", "--candidates", "50"]


def beir_folder(folder: Path, corpus_lines, queries, qrels) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(line + "\n" for line in corpus_lines), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries),
                                          encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q, d in qrels), encoding="utf-8")
    return folder


@pytest.fixture
def small(tmp_path, sample) -> Path:
    """A second collection: the first 20 sample documents, all sample queries and judgements."""
    lines = Path(sample[0]).read_text(encoding="utf-8").splitlines()[:20]
    folder = tmp_path / "data" / "small"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "queries.jsonl").write_bytes(Path(sample[1]).read_bytes())
    (folder / "qrels" / "test.tsv").write_bytes(Path(sample[2]).read_bytes())
    return folder


def test_two_collections_into_the_default_layout_then_reuse_and_overwrite(tmp_path, monkeypatch, capsys,
                                                                           model_dir, small):
    """The README's two commands (`make demo`, then `make demo DATA=...`): each collection gets its folder."""
    monkeypatch.chdir(tmp_path)
    model = ["--model", str(model_dir), *QUIET]
    assert main(["--sample", *model]) == 0
    first = capsys.readouterr().out
    assert "runs/demo/sample/metrics.md" in first
    assert main(["--data", str(small), *model]) == 0
    second = capsys.readouterr().out
    assert "already complete" not in second and "runs/demo/small/metrics.md" in second
    for name, count in (("sample", 40), ("small", 20)):
        summary = json.loads((tmp_path / "runs" / "demo" / name / "metrics.json").read_text())
        assert summary["accounting"]["written"] == count
        assert list(summary["metrics"]) == list(RUN_NAMES)  # bm25 and hybrid+bm25 after the diffret runs
        assert summary["bm25"]["index"]["indexed"] == count and summary["bm25"]["k1"] == 0.9
    assert "indexing 20 documents for BM25 with Lucene" in second and "searching bm25 (Lucene BM25" in second
    assert "| bm25 |" in second and "| hybrid+bm25 |" in second and "BM25: indexed 20, no text 0" in second
    # the same collection again: the encoding and both indexes are reused
    index = tmp_path / "runs" / "demo" / "small" / "indexes" / "lucene-bm25"
    built = {path.name: path.stat().st_mtime_ns for path in index.iterdir()}
    assert main(["--data", str(small), *model]) == 0
    again = capsys.readouterr().out
    assert "already complete" in again and "Lucene index up to date" in again and "BM25 index up to date" in again
    assert "for BM25 with Lucene" not in again
    assert {path.name: path.stat().st_mtime_ns for path in index.iterdir()} == built
    # --overwrite: encoded and indexed again
    assert main(["--data", str(small), "--overwrite", *model]) == 0
    redone = capsys.readouterr().out
    assert "already complete" not in redone and "Lucene index up to date" not in redone
    assert "BM25 index up to date" not in redone and "indexing 20 documents for BM25" in redone
    assert "accounting: read 20, encoded 20, written 20" in redone
    # an explicit --output still goes where it is told
    assert main(["--data", str(small), "--output", "elsewhere", *model]) == 0
    assert (tmp_path / "elsewhere" / "metrics.json").is_file()


def test_empty_corpus_stops_before_java(tmp_path, capsys, model_dir):
    data = beir_folder(tmp_path / "empty", [], [("q1", "a query")], [("q1", "d1")])
    out = tmp_path / "out"
    assert main(["--data", str(data), "--output", str(out), "--model", str(model_dir), *QUIET]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'corpus.jsonl'}: " in err and "nothing was encoded" in err and "Exception" not in err
    assert not (out / "indexes").exists()


def test_all_invalid_corpus_with_skip_invalid_stops_before_java(tmp_path, capsys, model_dir):
    data = beir_folder(tmp_path / "bad", ['{"_id": "d1"}', '{"_id": "d2", "text": "x\\ud800"}'],
                       [("q1", "a query")], [("q1", "d1")])
    out = tmp_path / "out"
    assert main(["--data", str(data), "--output", str(out), "--skip-invalid", "--model", str(model_dir), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "all 2 records were skipped as invalid" in err and "nothing was encoded" in err
    assert not (out / "indexes").exists()


def test_empty_queries_are_dropped_and_none_left_is_an_error(tmp_path, capsys, model_dir, sample):
    corpus = Path(sample[0]).read_text(encoding="utf-8").splitlines()[:8]
    data = beir_folder(tmp_path / "some-empty", corpus, [("q1", "aspirin"), ("q2", "   "), ("q3", "")],
                       [("q1", "s01"), ("q2", "s02"), ("q3", "s03")])
    out = tmp_path / "out"
    assert main(["--data", str(data), "--output", str(out), "--model", str(model_dir), *QUIET]) == 0
    captured = capsys.readouterr()
    assert "warning: 2 queries with empty text dropped" in captured.out
    assert (out / "topics.tsv").read_text() == "q1\taspirin\n"
    data = beir_folder(tmp_path / "all-empty", corpus, [("q1", " "), ("q2", "")], [("q1", "s01"), ("q2", "s02")])
    assert main(["--data", str(data), "--output", str(tmp_path / "out2"), "--model", str(model_dir), *QUIET]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'queries.jsonl'}" in err and "no query with text" in err
    assert not (tmp_path / "out2" / "encoded").exists()


def test_lone_surrogate_in_a_query_stops_or_is_skipped(tmp_path, capsys, model_dir, sample):
    corpus = Path(sample[0]).read_text(encoding="utf-8").splitlines()[:8]
    data = beir_folder(tmp_path / "hostile", corpus, [("q1", "aspirin"), ("q2", "bad \ud800")],
                       [("q1", "s01"), ("q2", "s02")])
    out = tmp_path / "out"
    assert main(["--data", str(data), "--output", str(out), "--model", str(model_dir), *QUIET]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'queries.jsonl'}:2: " in err and "surrogate" in err
    assert main(["--data", str(data), "--output", str(out), "--skip-invalid", "--model", str(model_dir), *QUIET]) == 0
    assert "1 invalid query record skipped" in capsys.readouterr().out


def test_bm25_run_and_hybrid_bm25_fusion(tmp_path, capsys, model_dir, sample):
    """BM25 indexes the documents the encoding read (an empty one is left out of Lucene and counted; a bad record
    skipped with --skip-invalid is in neither), and hybrid+bm25 is the paper's fusion of the three written runs."""
    corpus = Path(sample[0]).read_text(encoding="utf-8").splitlines()[:12]
    corpus += ['{"_id": "empty", "title": "", "text": ""}', '{"_id": "bad", "text": 3}']
    queries = [json.loads(line) for line in Path(sample[1]).read_text(encoding="utf-8").splitlines()]
    data = beir_folder(tmp_path / "twelve", corpus, [(q["_id"], q["text"]) for q in queries],
                       [(q["_id"], "s01") for q in queries])
    out = tmp_path / "out"
    weights = ["--bm25-weights", "0.2", "0.3", "0.5"]
    assert main(["--data", str(data), "--output", str(out), "--skip-invalid", "--model", str(model_dir), *weights,
                 *QUIET]) == 0
    printed = capsys.readouterr().out
    assert "indexing 13 documents for BM25" in printed and "12 documents indexed, 1 with no text left out" in printed
    assert "hybrid+bm25 (dense 0.2, sparse 0.3, bm25 0.5)" in printed
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["bm25_weights"] == {"dense": 0.2, "sparse": 0.3, "bm25": 0.5}
    assert summary["bm25"]["index"] == {"indexed": 12, "empty": 1, "skipped": 0, "errors": 0, "documents": 13}
    runs = {name: trec.read_run(out / "runs" / f"{name}.trec") for name in RUN_NAMES}
    assert set(summary["metrics"]) == set(RUN_NAMES) and "| hybrid+bm25 |" in (out / "metrics.md").read_text()
    bm25_docs = {docid for docs in runs["bm25"].values() for docid in docs}
    assert bm25_docs and "empty" not in bm25_docs and "bad" not in bm25_docs
    assert "empty" in {docid for docs in runs["dense"].values() for docid in docs}
    # hybrid+bm25 = 0.2 minmax(dense) + 0.3 minmax(sparse) + 0.5 minmax(bm25), from the written runs
    expected = fusion.fuse([runs["dense"], runs["sparse"], runs["bm25"]], [0.2, 0.3, 0.5], depth=100, k=100)
    assert runs["hybrid+bm25"].keys() == expected.keys()
    for qid, docs in runs["hybrid+bm25"].items():
        assert docs == pytest.approx(expected[qid], abs=1e-3)  # the runs read back carry 6 decimals
    # the other runs do not depend on BM25: the same with other weights, and hybrid+bm25 follows the weights
    again = tmp_path / "again"
    assert main(["--data", str(data), "--output", str(again), "--skip-invalid", "--model", str(model_dir),
                 "--bm25-weights", "0", "0", "1", *QUIET]) == 0
    capsys.readouterr()
    other = json.loads((again / "metrics.json").read_text())["metrics"]
    for name in ("sparse", "dense", "dense-multi", "hybrid", "hybrid-multi", "bm25"):
        assert other[name] == summary["metrics"][name]
    assert other["hybrid+bm25"]["nDCG@10"] == pytest.approx(other["bm25"]["nDCG@10"], abs=1e-4)


@pytest.mark.parametrize("weights, message", [
    (["1", "-1", "1"], "weight -1.0 of sparse must be a finite number >= 0"),
    (["0", "0", "0"], "all 3 weights are 0"),
    (["nan", "1", "1"], "weight nan of dense must be"),
])
def test_bad_bm25_weights_stop_before_anything_is_written(tmp_path, capsys, model_dir, weights, message):
    out = tmp_path / "out"
    assert main(["--sample", "--output", str(out), "--model", str(model_dir), "--bm25-weights", *weights,
                 *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_bm25_weights_take_three_values(tmp_path, capsys, model_dir):
    with pytest.raises(SystemExit) as stop:
        main(["--sample", "--output", str(tmp_path / "out"), "--bm25-weights", "0.5", "0.5", *QUIET])
    assert stop.value.code == 2
    assert "--bm25-weights: expected 3 arguments" in capsys.readouterr().err
    assert BM25_WEIGHTS == (0.7, 0.1, 0.2)  # chosen on SciFact train queries (BENCHMARKS.md, section 7)
