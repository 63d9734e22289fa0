"""``python -m pyserini_diffret.beir_topics``: BEIR queries/qrels -> Pyserini topics TSV + TREC qrels."""
from __future__ import annotations

import json

import pytest

from pyserini_diffret.beir_topics import convert, main
from pyserini_diffret.workflow.collection import InputError


def beir(folder, queries, qrels_lines):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "x"}) + "\n")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels_lines))
    return folder


def test_writes_judged_topics_and_trec_qrels(tmp_path):
    data = beir(tmp_path / "data", [("1", "first  query\n"), ("2", "unjudged"), ("3", "third")],
                ["1\td1\t1\n", "3\td1\t2\n"])
    topics, qrels, count = convert(data, tmp_path / "out")
    assert count == 2
    assert topics.read_text() == "1\tfirst query\n3\tthird\n"
    assert qrels.read_text() == "1 0 d1 1\n3 0 d1 2\n"
    assert main(["--data", str(data), "--output", str(tmp_path / "again")]) == 0


def test_judged_query_without_text_is_an_error(tmp_path, capsys):
    data = beir(tmp_path / "data", [("1", "q")], ["1\td1\t1\n", "9\td1\t1\n"])
    with pytest.raises(InputError, match="1 judged query ids have no query text"):
        convert(data, tmp_path / "out")
    assert main(["--data", str(data), "--output", str(tmp_path / "out")]) == 2
    assert "test.tsv" in capsys.readouterr().err


def test_empty_queries_are_dropped_with_a_count(tmp_path, capsys):
    data = beir(tmp_path / "data", [("1", "first"), ("2", ""), ("3", "  \t "), ("4", "fourth")],
                ["1\td1\t1\n", "2\td1\t1\n", "3\td1\t1\n", "4\td1\t1\n"])
    assert main(["--data", str(data), "--output", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "warning: 2 queries with empty text dropped" in captured.err and "queries.jsonl" in captured.err
    assert "2 judged queries ->" in captured.out
    assert (tmp_path / "out" / "topics.tsv").read_text() == "1\tfirst\n4\tfourth\n"
    assert (tmp_path / "out" / "qrels.txt").read_text().count("\n") == 4  # judgements kept: trec_eval -c scores 0


def test_no_usable_query_is_an_error(tmp_path, capsys):
    data = beir(tmp_path / "data", [("1", ""), ("2", " ")], ["1\td1\t1\n", "2\td1\t1\n"])
    assert main(["--data", str(data), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "queries.jsonl" in err and "no query with text" in err
    assert not (tmp_path / "out" / "topics.tsv").exists()


def test_lone_surrogate_in_a_query_names_the_line(tmp_path, capsys):
    data = beir(tmp_path / "data", [("1", "first"), ("2", "bad \ud800 text"), ("3", "third")],
                ["1\td1\t1\n", "3\td1\t1\n"])
    assert main(["--data", str(data), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'queries.jsonl'}:2: " in err and "surrogate" in err
    assert main(["--data", str(data), "--output", str(tmp_path / "out"), "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "1 invalid query record skipped" in captured.err
    assert (tmp_path / "out" / "topics.tsv").read_text() == "1\tfirst\n3\tthird\n"


def test_written_topics_are_read_by_pyserini(tmp_path):
    """What the README's next step does with the file: Pyserini's own TSV topic reader (Anserini's)."""
    from pyserini.query_iterator import DefaultQueryIterator

    data = beir(tmp_path / "data", [("1", "first  query"), ("2", ""), ("3", "third\tone")],
                ["1\td1\t1\n", "2\td1\t1\n", "3\td1\t1\n"])
    topics, _, count = convert(data, tmp_path / "out")
    assert count == 2
    read = [(str(qid), text) for qid, text in DefaultQueryIterator.from_topics(str(topics))]  # int ids for "1"
    assert read == [("1", "first query"), ("3", "third one")]
