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
