"""Streaming readers for corpora, topics and judgements, strict about bad input.

Corpus (JSON lines; one file, or a folder whose ``*.jsonl``/``*.json``/``*.jsonl.gz`` files are read in
sorted name order):
- BEIR layout ``{"_id", "title", "text"}`` and Pyserini layouts ``{"id", "contents"}`` / ``{"docid", ...}``;
  ``--docid-field`` names another id field.
- Blank lines are not records (ignored, not counted). A UTF-8 byte-order mark is ignored.
- Errors name the file and line, and stop the run: malformed JSON, a line that is not a JSON object,
  invalid UTF-8, a missing or empty id, an id with whitespace (TREC runs split on it), a duplicate id,
  a field that is neither a string nor null, a record with none of the text fields, an id or a used field
  holding an unpaired surrogate (an escaped ``\ud800`` is valid JSON, but no UTF-8 can carry it). With
  ``skip_invalid=True`` such records are skipped instead and counted (``skipped``), never silently.
- Counted handling, not errors: a requested field missing from a record (or null) is read as empty
  (``missing fields``); a record whose fields are all empty is encoded as the empty text (a valid,
  empty sparse vector and a dense vector; ``empty texts``); a text longer than ``max_chars`` characters is
  cut there before encoding (``clipped``; only the first ``max_document_length`` tokens are encoded anyway).

Fields: with ``fields=None`` each record gives ``title`` (optional) and ``text`` (or, Pyserini's layout,
``contents``). With explicit fields (Pyserini's ``--fields title text``) the ``title`` field becomes the
title and the others, joined by a space, the text; a record that has none of them but has ``contents`` is
split on ``delimiter`` into the fields, as Pyserini does.

Topics (``read_topics``): the same strictness per record (``skip_invalid`` skips and counts in a
``TopicStats``); a query whose text is empty or only whitespace is dropped and listed there (Pyserini's
TSV topic reader fails on a query without text, so no such line is ever written).
"""
from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from pyserini_diffret.core.text import DEFAULT_MAX_CHARS, clip_text

ID_FIELDS = ("id", "_id", "docid")
CORPUS_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
_SURROGATE = re.compile("[\ud800-\udfff]")  # left unpaired by json.loads ("\ud800"): not encodable as UTF-8


class InputError(ValueError):
    """Bad input, with the file and line it was found at."""

    def __init__(self, source: str | os.PathLike, line: int | None, message: str) -> None:
        self.source, self.line, self.reason = str(source), line, message
        where = f"{source}:{line}" if line is not None else str(source)
        super().__init__(f"{where}: {message}")


@dataclass
class Document:
    docid: str
    title: str | None
    text: str
    source: str
    line: int


@dataclass
class Position:
    """Where a reader stands: the next record index, file index, byte offset and line number."""

    record: int = 0
    file: int = 0
    offset: int = 0
    line: int = 0

    def to_dict(self) -> dict:
        return dict(record=self.record, file=self.file, offset=self.offset, line=self.line)


@dataclass
class CorpusStats:
    counts: Counter = field(default_factory=Counter)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


def check_encodable(value: str, what: str, source: str | os.PathLike, line: int | None) -> str:
    """``value`` itself, or an ``InputError`` naming ``what`` when it holds a surrogate code point.

    ``json.loads`` turns an escaped lone surrogate (``"\\ud800"``, valid JSON, common in scraped text)
    into a string that neither UTF-8 nor the tokenizer accepts; found here, it is a bad record.
    """
    match = _SURROGATE.search(value)
    if match:
        raise InputError(source, line, f"{what} holds an unpaired surrogate ({ascii(match.group())} at character "
                                       f"{match.start()}): valid JSON, but not text that UTF-8 can encode")
    return value


def json_error(error: json.JSONDecodeError) -> str:
    """``json``'s message and column, worded as Python words them (``... starting at: column 22``)."""
    return f"not valid JSON ({error.msg}: column {error.colno})"


def corpus_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise InputError(path, None, "no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(CORPUS_SUFFIXES))
    if not files:
        raise InputError(path, None, f"folder has no corpus files ({', '.join(CORPUS_SUFFIXES)})")
    return files


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _is_blank(raw: bytes) -> bool:
    return not raw.strip()


def count_records(files: Sequence[Path]) -> int:
    """Non-blank lines over ``files`` (cheap: no JSON parsing)."""
    total = 0
    for path in files:
        with _open_binary(path) as f:
            for raw in f:
                total += not _is_blank(raw)
    return total


def shard_range(total: int, shard_id: int, shard_num: int) -> tuple[int, int]:
    """Records ``[start, end)`` of one shard, split as Pyserini's ``JsonlCollectionIterator`` splits."""
    if shard_num < 1 or not 0 <= shard_id < shard_num:
        raise ValueError(f"--shard-id must be in [0, {shard_num}) and --shard-num >= 1; got {shard_id}/{shard_num}")
    size = total // shard_num
    start = shard_id * size
    end = total if shard_id == shard_num - 1 else min(start + size, total)
    return start, end


class CorpusReader:
    """Reads documents one at a time; ``seek`` to a ``Position`` resumes without re-reading."""

    def __init__(self, path: str | os.PathLike, fields: Sequence[str] | None = None, docid_field: str | None = None,
                 delimiter: str = "\n", skip_invalid: bool = False, max_chars: int | None = DEFAULT_MAX_CHARS) -> None:
        self.files = corpus_files(path)
        self.fields = list(fields) if fields else None
        self.docid_field = docid_field
        self.delimiter = delimiter
        self.skip_invalid = skip_invalid
        self.max_chars = max_chars
        self.stats = CorpusStats()
        self.seen: dict[str, tuple[int, int]] = {}  # docid -> (file index, line) of its first record

    def remember(self, docid: str, where: tuple[int, int] = (-1, 0)) -> None:
        """Record an id as already read (resuming, or ids of other shards)."""
        self.seen[docid] = where

    # -- iteration -------------------------------------------------------------------------------
    def read(self, start: Position | None = None, end_record: int | None = None) -> Iterator[tuple[Document | None, Position]]:
        """Yield ``(document, position after it)`` for records from ``start`` up to ``end_record``.

        ``document`` is None for a record skipped as invalid (``skip_invalid``). ``start`` comes from
        ``skip_to`` or from an earlier ``read`` (a checkpoint).
        """
        pos = Position(**(start.to_dict() if start else {}))
        for file_index in range(pos.file, len(self.files)):
            path = self.files[file_index]
            with _open_binary(path) as f:
                if file_index == pos.file and pos.offset:
                    f.seek(pos.offset)
                    offset, line = pos.offset, pos.line
                else:
                    offset, line = 0, 0
                for raw in f:
                    if end_record is not None and pos.record >= end_record:
                        return
                    offset += len(raw)
                    line += 1
                    if _is_blank(raw):
                        continue
                    if offset == len(raw) and raw.startswith(b"\xef\xbb\xbf"):
                        raw = raw[3:]
                    record_index = pos.record
                    pos = Position(record_index + 1, file_index, offset, line)
                    yield self._document(raw, path, file_index, line), pos
            pos = Position(pos.record, file_index + 1, 0, 0)

    def skip_to(self, record: int) -> Position:
        """The position of record ``record`` (counting non-blank lines), without parsing JSON."""
        pos = Position()
        if record == 0:
            return pos
        for file_index, path in enumerate(self.files):
            offset = line = 0
            with _open_binary(path) as f:
                for raw in f:
                    offset += len(raw)
                    line += 1
                    if _is_blank(raw):
                        continue
                    pos = Position(pos.record + 1, file_index, offset, line)
                    if pos.record == record:
                        return pos
            pos = Position(pos.record, file_index + 1, 0, 0)
        return pos

    # -- one record ------------------------------------------------------------------------------
    def _document(self, raw: bytes, path: Path, file_index: int, line: int) -> Document | None:
        try:
            return self._parse(raw, path, file_index, line)
        except InputError:
            if not self.skip_invalid:
                raise
            self.stats.add("skipped")
            return None

    def _parse(self, raw: bytes, path: Path, file_index: int, line: int) -> Document:
        self.stats.add("read")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            bad = raw[error.start:error.start + 1].hex()
            raise InputError(path, line, f"not valid UTF-8 (byte 0x{bad} at byte {error.start} of the line)") from None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(path, line, json_error(error)) from None
        if not isinstance(record, dict):
            raise InputError(path, line, f"expected a JSON object, got {type(record).__name__}")
        docid = self._docid(record, path, line)
        first = self.seen.get(docid)
        if first is not None:
            where = f"{self.files[first[0]]}:{first[1]}" if first[0] >= 0 else "an earlier part of the output"
            raise InputError(path, line, f"duplicate id {docid!r} (first seen at {where})")
        title, body = self._fields(record, path, line)
        self.seen[docid] = (file_index, line)
        if not (title or "").strip() and not body.strip():
            self.stats.add("empty")
        body, body_cut = clip_text(body, self.max_chars)
        clipped_title, title_cut = clip_text(title, self.max_chars)
        title = clipped_title if title else title
        if body_cut or title_cut:
            self.stats.add("clipped")
        return Document(docid, title, body, str(path), line)

    def _docid(self, record: dict, path: Path, line: int) -> str:
        names = (self.docid_field,) if self.docid_field else ID_FIELDS
        value = next((record[name] for name in names if name in record), None)
        if value is None:
            raise InputError(path, line, f"no document id (expected a field {' or '.join(map(repr, names))})")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InputError(path, line, f"document id must be a string or an integer, got {type(value).__name__}")
        docid = check_encodable(str(value), "document id", path, line)
        if not docid.strip():
            raise InputError(path, line, "empty document id")
        if any(ch.isspace() for ch in docid):
            raise InputError(path, line, f"document id {docid!r} contains whitespace (TREC run files split on it)")
        return docid

    def _string(self, record: dict, name: str, path: Path, line: int) -> str | None:
        value = record.get(name)
        if value is None:
            return value
        if isinstance(value, str):
            return check_encodable(value, f"field {name!r}", path, line)
        raise InputError(path, line, f"field {name!r} must be a string, got {type(value).__name__}")

    def _fields(self, record: dict, path: Path, line: int) -> tuple[str | None, str]:
        if self.fields is None:
            title = self._string(record, "title", path, line)
            if "text" in record:
                text = self._string(record, "text", path, line)
            elif "contents" in record:
                text = self._string(record, "contents", path, line)
            else:
                raise InputError(path, line, "no text field (expected 'text' or 'contents')")
            if text is None:
                self.stats.add("missing_fields")
            return title, text or ""
        values: dict[str, str] = {}
        present = [name for name in self.fields if name in record]
        if not present:
            contents = self._string(record, "contents", path, line)
            if contents is None:
                raise InputError(path, line, f"none of the fields {self.fields} (nor 'contents') is present")
            parts = contents.split(self.delimiter, len(self.fields) - 1)
            if len(parts) < len(self.fields):
                self.stats.add("missing_fields", len(self.fields) - len(parts))
            parts += [""] * (len(self.fields) - len(parts))
            values = {name: part.strip() for name, part in zip(self.fields, parts)}
        else:
            for name in self.fields:
                value = self._string(record, name, path, line)
                if value is None:
                    self.stats.add("missing_fields")
                values[name] = (value or "").strip()
        title = values.pop("title", None) if "title" in self.fields else None
        text = " ".join(value for value in values.values() if value)
        return title, text


# -- topics and judgements ------------------------------------------------------------------------------
def _decode(raw: bytes, path: Path, number: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(path, number, f"not valid UTF-8 (byte 0x{raw[error.start:error.start + 1].hex()})") from None
    return text.lstrip("\ufeff") if number == 1 else text


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            yield number, _decode(raw, path, number)


@dataclass
class TopicStats:
    """What ``read_topics`` left out: invalid records skipped (``skip_invalid``), queries without text."""

    skipped: int = 0
    empty: list[str] = field(default_factory=list)  # ids of queries whose text is empty or whitespace


def read_topics(path: str | os.PathLike, skip_invalid: bool = False, stats: TopicStats | None = None) -> dict[str, str]:
    """Queries from BEIR ``queries.jsonl`` (``_id``/``id``, ``text``/``title``) or a TSV ``qid<TAB>text``.

    Whitespace in a text is collapsed to single spaces. A bad record (malformed JSON or UTF-8, no id, an id
    with whitespace, a duplicate id, no text, an unpaired surrogate) stops with ``file:line``, or with
    ``skip_invalid`` is skipped and counted in ``stats.skipped``. A query with an empty text is dropped and
    its id listed in ``stats.empty``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such query file")
    stats = stats if stats is not None else TopicStats()
    topics: dict[str, str] = {}
    seen: set[str] = set()
    jsonl = path.name.endswith((".jsonl", ".json"))
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                qid, text = _topic(raw, path, number, jsonl, seen)
            except InputError:
                if not skip_invalid:
                    raise
                stats.skipped += 1
                continue
            seen.add(qid)
            if text:
                topics[qid] = text
            else:
                stats.empty.append(qid)
    return topics


def _topic(raw: bytes, path: Path, number: int, jsonl: bool, seen: set[str]) -> tuple[str, str]:
    line = _decode(raw, path, number)
    if jsonl:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(path, number, json_error(error)) from None
        if not isinstance(record, dict):
            raise InputError(path, number, "expected a JSON object")
        qid = next((record[k] for k in ("_id", "id", "qid", "query_id") if k in record), None)
        text = next((record[k] for k in ("text", "query", "title", "contents") if k in record), None)
    else:
        qid, sep, text = line.rstrip("\r\n").partition("\t")
        if not sep:
            raise InputError(path, number, "expected 'query id<TAB>query text'")
    if qid is None or not str(qid).strip():
        raise InputError(path, number, "no query id")
    if not isinstance(text, str):
        raise InputError(path, number, "no query text")
    qid = check_encodable(str(qid).strip(), "query id", path, number)
    check_encodable(text, "query text", path, number)
    if any(ch.isspace() for ch in qid):
        raise InputError(path, number, f"query id {qid!r} contains whitespace")
    if qid in seen:
        raise InputError(path, number, f"duplicate query id {qid!r}")
    return qid, " ".join(text.split())


def dropped_queries(path: str | os.PathLike, stats: TopicStats, judged: Iterable[str] = ()) -> list[str]:
    """Warning lines for what ``read_topics`` left out of ``path`` (none when nothing was)."""
    lines = []
    if stats.skipped:
        lines.append(f"warning: {stats.skipped} invalid query record{'s' if stats.skipped != 1 else ''} skipped "
                     f"in {path} (--skip-invalid)")
    if stats.empty:
        judged_empty = [qid for qid in stats.empty if qid in set(judged)]
        lines.append(f"warning: {len(stats.empty)} quer{'ies' if len(stats.empty) != 1 else 'y'} with empty text "
                     f"dropped from {path} (first: {stats.empty[0]!r}); {len(judged_empty)} of them judged: not "
                     "searched, they score 0 (trec_eval -c)")
    return lines


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Judgements from a BEIR TSV (``query-id corpus-id score``, header optional) or TREC qrels
    (``qid iteration docid relevance``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such qrels file")
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _text_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 3:
            qid, docid, grade = parts
        elif len(parts) == 4:
            qid, _, docid, grade = parts
        else:
            raise InputError(path, number, f"expected 3 (BEIR) or 4 (TREC) columns, got {len(parts)}")
        try:
            value = int(float(grade))
        except ValueError:
            if number == 1:  # a header line
                continue
            raise InputError(path, number, f"relevance {grade!r} is not a number") from None
        qrels.setdefault(qid, {})[docid] = value
    if not qrels:
        raise InputError(path, None, "no judgements")
    return qrels


def write_topics_tsv(topics: dict[str, str], path: str | os.PathLike) -> Path:
    """``qid<TAB>text`` lines, as Pyserini's TSV topic reader reads them: at least one query, every query with
    a one-line text (its reader fails on a query without text, and finds no topics in an empty file)."""
    path = Path(path)
    if not topics:
        raise ValueError(f"{path}: no queries to write (Pyserini's topic reader rejects an empty topics file)")
    for qid, text in topics.items():
        if not text.strip() or any(ch in text for ch in "\t\r\n") or not qid or any(ch.isspace() for ch in qid):
            raise ValueError(f"{path}: query {qid!r} cannot be written as 'id<TAB>text' on one line: {text!r}")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for qid, text in topics.items():
            f.write(f"{qid}\t{text}\n")
    return path


def write_trec_qrels(qrels: dict[str, dict[str, int]], path: str | os.PathLike) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for qid, docs in qrels.items():
            for docid, grade in docs.items():
                f.write(f"{qid} 0 {docid} {grade}\n")
    return path


def find_beir_files(folder: str | os.PathLike, split: str = "test") -> tuple[Path, Path, Path]:
    """``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` of a BEIR folder."""
    folder = Path(folder)
    corpus = next((folder / n for n in ("corpus.jsonl", "corpus.jsonl.gz") if (folder / n).is_file()), None)
    queries = next((folder / n for n in ("queries.jsonl", "topics.tsv", "queries.tsv")
                    if (folder / n).is_file()), None)
    qrels = next((p for p in (folder / "qrels" / f"{split}.tsv", folder / f"qrels.{split}.tsv", folder / "qrels.txt")
                  if p.is_file()), None)
    missing = [name for name, p in (("corpus.jsonl", corpus), ("queries.jsonl", queries),
                                    (f"qrels/{split}.tsv", qrels)) if p is None]
    if missing:
        raise InputError(folder, None, f"not a BEIR folder: missing {', '.join(missing)}")
    return corpus, queries, qrels


__all__ = [
    "CorpusReader", "Document", "InputError", "Position", "TopicStats", "check_encodable", "count_records",
    "corpus_files", "dropped_queries", "find_beir_files", "json_error", "read_qrels", "read_topics", "shard_range",
    "write_topics_tsv", "write_trec_qrels",
]
