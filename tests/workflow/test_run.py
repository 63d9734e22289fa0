"""``python -m pyserini_diffret.run`` (in process): the default output layout, reuse, --overwrite, and inputs
that must stop it before any Java is started. A tiny random model; the sample collection and a smaller
second collection built from it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyserini_diffret.workflow.run import main
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
    # the same collection again: the encoding and the index are reused
    assert main(["--data", str(small), *model]) == 0
    again = capsys.readouterr().out
    assert "already complete" in again and "Lucene index up to date" in again
    # --overwrite: encoded and indexed again
    assert main(["--data", str(small), "--overwrite", *model]) == 0
    redone = capsys.readouterr().out
    assert "already complete" not in redone and "Lucene index up to date" not in redone
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
