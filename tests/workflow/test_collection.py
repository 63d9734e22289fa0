"""Corpus, topic and qrels readers: layouts, sharding, and every kind of bad input."""
from __future__ import annotations

import json

import pytest

from pyserini_diffret.workflow.collection import (
    CorpusReader, InputError, count_records, read_qrels, read_topics, shard_range,
)


def write_lines(path, lines):
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")
    return path


def docs(reader):
    return [doc for doc, _ in reader.read()]


def good(i, **fields):
    return json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": f"text {i}", **fields})


def test_beir_and_pyserini_layouts(tmp_path):
    beir = write_lines(tmp_path / "beir.jsonl", [good(1), "", "   ", good(2)])
    found = docs(CorpusReader(beir))
    assert [(d.docid, d.title, d.text, d.line) for d in found] == [("d1", "T1", "text 1", 1), ("d2", "T2", "text 2", 4)]
    folder = tmp_path / "pyserini"
    folder.mkdir()
    write_lines(folder / "b.jsonl", [json.dumps({"id": 7, "contents": "seven"})])
    write_lines(folder / "a.jsonl", ['\ufeff' + json.dumps({"docid": "x", "contents": "ex"})])
    found = docs(CorpusReader(folder))
    assert [(d.docid, d.title, d.text) for d in found] == [("x", None, "ex"), ("7", None, "seven")]


def test_explicit_fields_split_contents_like_pyserini(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [json.dumps({"id": "a", "contents": "Title\nBody text"}),
                                              json.dumps({"id": "b", "contents": "only"})])
    reader = CorpusReader(path, fields=["title", "text"])
    found = docs(reader)
    assert [(d.title, d.text) for d in found] == [("Title", "Body text"), ("only", "")]
    assert reader.stats["missing_fields"] == 1


def test_shards_follow_pyserini_split(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [good(i) for i in range(10)])
    assert count_records(CorpusReader(path).files) == 10
    assert [shard_range(10, i, 3) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    reader = CorpusReader(path)
    start = reader.skip_to(3)
    assert [d.docid for d, _ in reader.read(start, 6)] == ["d3", "d4", "d5"]
    with pytest.raises(ValueError):
        shard_range(10, 3, 3)


@pytest.mark.parametrize("line, message", [
    (b'{"_id": "x", "text": "broken"', "not valid JSON"),
    (b'["a", "list"]', "expected a JSON object"),
    (b'{"title": "no id", "text": "t"}', "no document id"),
    (b'{"_id": "", "text": "t"}', "empty document id"),
    (b'{"_id": "has space", "text": "t"}', "contains whitespace"),
    (b'{"_id": "x", "text": "caf\xe9"}', "not valid UTF-8"),
    (b'{"_id": "x", "title": "t"}', "no text field"),
    (b'{"_id": "x", "text": 12}', "must be a string"),
    (b'{"_id": "d1", "text": "again"}', "duplicate id 'd1'"),
])
def test_bad_records_name_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [good(1), good(2), line, good(3)])
    with pytest.raises(InputError) as caught:
        docs(CorpusReader(path))
    assert message in str(caught.value)
    assert f"{path}:3:" in str(caught.value)
    # asked for: the bad record is skipped and counted, nothing else is lost
    reader = CorpusReader(path, skip_invalid=True)
    assert [d.docid for d in docs(reader) if d] == ["d1", "d2", "d3"]
    assert reader.stats["skipped"] == 1 and reader.stats["read"] == 4


def test_missing_empty_and_enormous_fields_are_counted(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [
        json.dumps({"_id": "a", "text": "no title"}),
        json.dumps({"_id": "b", "title": None, "text": None}),
        json.dumps({"_id": "c", "title": "", "text": ""}),
        json.dumps({"_id": "d", "text": "word " * 50_000}),
    ])
    reader = CorpusReader(path, fields=["title", "text"], max_chars=1000)
    found = docs(reader)
    assert [d.docid for d in found] == ["a", "b", "c", "d"]
    assert len(found[3].text) == 1000
    assert reader.stats["missing_fields"] == 4  # a, d: title; b: title and text
    assert reader.stats["empty"] == 2 and reader.stats["clipped"] == 1


def test_topics_and_qrels(tmp_path):
    tsv = write_lines(tmp_path / "t.tsv", ["1\twhat is  a\twing", "2\tsecond"])
    assert read_topics(tsv) == {"1": "what is a wing", "2": "second"}
    jsonl = write_lines(tmp_path / "q.jsonl", [json.dumps({"_id": "q1", "text": "hello"})])
    assert read_topics(jsonl) == {"q1": "hello"}
    beir = write_lines(tmp_path / "test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q1\td2\t0"])
    trec = write_lines(tmp_path / "qrels.txt", ["q1 0 d1 1", "q1 0 d2 0"])
    assert read_qrels(beir) == read_qrels(trec) == {"q1": {"d1": 1, "d2": 0}}
    with pytest.raises(InputError, match=r"t2.tsv:2: duplicate query id"):
        read_topics(write_lines(tmp_path / "t2.tsv", ["1\ta", "1\tb"]))
    with pytest.raises(InputError, match=r"q2.tsv:1: expected 'query id<TAB>query text'"):
        read_topics(write_lines(tmp_path / "q2.tsv", ["no tab here"]))
    with pytest.raises(InputError, match=r"r.txt:2: expected 3 \(BEIR\) or 4 \(TREC\) columns"):
        read_qrels(write_lines(tmp_path / "r.txt", ["q1 0 d1 1", "q1 d1"]))


# -- hostile strings: a lone surrogate is valid JSON ("\ud800") but no UTF-8 can carry it -----------------
LONE = "\\ud800"  # as it stands in the file: an escaped, unpaired high surrogate


@pytest.mark.parametrize("record, fields, where", [
    ('{"_id": "x", "title": "T", "text": "caf%s"}', None, "field 'text'"),
    ('{"_id": "x", "title": "T%s", "text": "t"}', None, "field 'title'"),
    ('{"_id": "x%s", "text": "t"}', None, "document id"),
    ('{"id": "x", "contents": "%s body"}', None, "field 'contents'"),
    ('{"id": "x", "contents": "Title\\n%s body"}', ["title", "text"], "field 'contents'"),
    ('{"_id": "x", "title": "t", "text": "body %s"}', ["title", "text"], "field 'text'"),
    ('{"docid": "%s", "contents": "x"}', None, "document id"),
])
def test_lone_surrogate_is_a_bad_record(tmp_path, record, fields, where):
    path = write_lines(tmp_path / "hostile.jsonl", [good(1), good(2), record % LONE, good(3)])
    with pytest.raises(InputError) as caught:
        docs(CorpusReader(path, fields=fields))
    message = str(caught.value)
    assert message.startswith(f"{path}:3: ") and where in message and "surrogate" in message
    reader = CorpusReader(path, fields=fields, skip_invalid=True)
    assert [d.docid for d in docs(reader) if d] == ["d1", "d2", "d3"]
    assert reader.stats["skipped"] == 1 and reader.stats["read"] == 4


def test_paired_surrogates_are_one_character_and_fine(tmp_path):
    path = write_lines(tmp_path / "emoji.jsonl", ['{"_id": "x", "text": "smile \\ud83d\\ude00"}'])
    assert [d.text for d in docs(CorpusReader(path))] == ["smile \U0001F600"]


@pytest.mark.parametrize("record, where", [
    ('{"_id": "q2", "text": "what %s"}', "query text"),
    ('{"_id": "q%s", "text": "what"}', "query id"),
])
def test_lone_surrogate_in_a_query(tmp_path, record, where):
    from pyserini_diffret.workflow.collection import TopicStats

    path = write_lines(tmp_path / "queries.jsonl", ['{"_id": "q1", "text": "one"}', record % LONE,
                                                    '{"_id": "q3", "text": "three"}'])
    with pytest.raises(InputError) as caught:
        read_topics(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: ") and where in message and "surrogate" in message
    stats = TopicStats()
    assert read_topics(path, skip_invalid=True, stats=stats) == {"q1": "one", "q3": "three"}
    assert stats.skipped == 1


def test_empty_queries_are_dropped_and_counted(tmp_path):
    from pyserini_diffret.workflow.collection import TopicStats

    tsv = write_lines(tmp_path / "t.tsv", ["1\tfirst", "2\t", "3\t \t ", "4\tfourth"])
    stats = TopicStats()
    assert read_topics(tsv, stats=stats) == {"1": "first", "4": "fourth"}
    assert stats.empty == ["2", "3"]
    jsonl = write_lines(tmp_path / "q.jsonl", ['{"_id": "a", "text": ""}', '{"_id": "b", "text": "bee"}'])
    stats = TopicStats()
    assert read_topics(jsonl, stats=stats) == {"b": "bee"}
    assert stats.empty == ["a"]


def test_malformed_json_message_reads_well(tmp_path):
    """json's own "... at" messages ("Invalid control character at", "Unterminated string starting at") get
    the column after a colon, as Python words them, not "at at column"."""
    path = write_lines(tmp_path / "c.jsonl", ['{"_id": "x", "text": "unterminated'])
    with pytest.raises(InputError) as caught:
        docs(CorpusReader(path))
    assert str(caught.value) == f"{path}:1: not valid JSON (Invalid control character at: column 35)"
    path.write_text('{"_id": "x", "text": "unterminated')  # no newline: the string runs to the end
    with pytest.raises(InputError) as caught:
        docs(CorpusReader(path))
    assert str(caught.value) == f"{path}:1: not valid JSON (Unterminated string starting at: column 22)"
    queries = write_lines(tmp_path / "q.jsonl", ['{"_id": "q", "text": "a" "b"}'])
    with pytest.raises(InputError, match=r"q.jsonl:1: not valid JSON \(Expecting ',' delimiter: column 26\)$"):
        read_topics(queries)
