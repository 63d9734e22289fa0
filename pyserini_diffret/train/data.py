"""Training data: (query, positives, negatives) examples from a JSONL file or a BEIR folder.

JSONL, one object a line::

    {"query": "text", "positives": ["text", {"title": "t", "text": "body"}], "negatives": [...]}

``negatives`` may be left out (or empty) when negatives are mined with BM25 from a corpus. A passage is a
string or an object with ``text`` and an optional ``title`` (joined as ``title + ". " + text``, as
documents are encoded at search time). Extra keys (``query_id``...) are ignored.

A BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/train.tsv``) gives one example per judged
query: positives are its documents with a score above 0; negatives are mined with Pyserini's BM25
(Lucene, k1=0.9 b=0.4) from the corpus, never a judged positive.

Every problem is reported with the file and line it comes from (``TrainingDataError``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pyserini_diffret.workflow import collection

TITLE_SEPARATOR = ". "


class TrainingDataError(ValueError):
    """Training data that cannot be used; the message names the file (and line)."""


@dataclass
class Example:
    query: str
    positives: list[str]
    negatives: list[str] = field(default_factory=list)
    query_id: str | None = None
    positive_ids: list[str] = field(default_factory=list)  # corpus ids when known (BEIR), for mining


def passage_text(value: Any, where: str, title_separator: str = TITLE_SEPARATOR) -> str:
    """A passage given as a string or as ``{"title": ..., "text": ...}``."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        body, title = value.get("text"), value.get("title") or ""
        if not isinstance(body, str) or not isinstance(title, str):
            raise TrainingDataError(f"{where}: a passage object needs a string 'text' (and an optional string 'title')")
        text = f"{title}{title_separator}{body}" if title else body
    else:
        raise TrainingDataError(f"{where}: a passage must be a string or an object with 'text', got {type(value).__name__}")
    if not text.strip():
        raise TrainingDataError(f"{where}: empty passage text")
    return text


def read_jsonl(path: str | Path, title_separator: str = TITLE_SEPARATOR) -> list[Example]:
    """Examples from a JSONL training file; every error names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"{path}: training file not found")
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrainingDataError(f"{where}: {collection.json_error(error)}") from None
            if not isinstance(record, dict):
                raise TrainingDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            query = record.get("query")
            if not isinstance(query, str) or not query.strip():
                raise TrainingDataError(f"{where}: 'query' must be a non-empty string")
            positives = record.get("positives")
            if not isinstance(positives, list) or not positives:
                raise TrainingDataError(f"{where}: 'positives' must be a non-empty list of passages")
            negatives = record.get("negatives", [])
            if negatives is None:
                negatives = []
            if not isinstance(negatives, list):
                raise TrainingDataError(f"{where}: 'negatives' must be a list of passages")
            examples.append(Example(
                query=query,
                positives=[passage_text(p, f"{where}: positives[{i}]", title_separator) for i, p in enumerate(positives)],
                negatives=[passage_text(n, f"{where}: negatives[{i}]", title_separator) for i, n in enumerate(negatives)],
                query_id=str(record["query_id"]) if "query_id" in record else None,
            ))
    if not examples:
        raise TrainingDataError(f"{path}: no training examples (the file is empty)")
    return examples


def read_corpus(path: str | Path, title_separator: str = TITLE_SEPARATOR) -> dict[str, str]:
    """A corpus (BEIR ``corpus.jsonl`` or Pyserini JSON lines): ``{doc id: title + ". " + text}``.

    Read by the search-time reader (``workflow.collection``), so training sees the same documents with the
    same rules for bad input; its errors are re-raised as ``TrainingDataError`` with the same message.
    """
    corpus: dict[str, str] = {}
    try:
        for doc, _ in collection.CorpusReader(path).read():
            corpus[doc.docid] = f"{doc.title}{title_separator}{doc.text}" if doc.title else doc.text
    except collection.InputError as error:
        raise TrainingDataError(str(error)) from None
    if not corpus:
        raise TrainingDataError(f"{path}: the corpus is empty")
    return corpus


def read_queries(path: str | Path) -> dict[str, str]:
    """BEIR ``queries.jsonl`` or a topics TSV: ``{query id: text}``."""
    try:
        return collection.read_topics(path)
    except collection.InputError as error:
        raise TrainingDataError(str(error)) from None


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV (header ``query-id corpus-id score``) or TREC qrels (``qid 0 docid rel``)."""
    try:
        return collection.read_qrels(path)
    except collection.InputError as error:
        raise TrainingDataError(str(error)) from None


def read_beir(folder: str | Path, qrels: str | Path | None = None,
              title_separator: str = TITLE_SEPARATOR) -> tuple[list[Example], dict[str, str]]:
    """One example per judged query of a BEIR folder (positives: score > 0); also returns the corpus."""
    folder = Path(folder)
    qrels_path = Path(qrels) if qrels else folder / "qrels" / "train.tsv"
    if not qrels_path.is_absolute() and not qrels_path.exists() and (folder / qrels_path).exists():
        qrels_path = folder / qrels_path
    corpus = read_corpus(folder / "corpus.jsonl", title_separator)
    queries = read_queries(folder / "queries.jsonl")
    judged = read_qrels(qrels_path)
    examples = []
    for qid, docs in judged.items():
        if qid not in queries:
            raise TrainingDataError(f"{qrels_path}: query {qid!r} is not in {folder / 'queries.jsonl'}")
        positive_ids = [d for d, score in docs.items() if score > 0]
        missing = [d for d in positive_ids if d not in corpus]
        if missing:
            raise TrainingDataError(f"{qrels_path}: query {qid!r} judges documents not in the corpus: {missing[:5]}")
        if positive_ids:
            examples.append(Example(query=queries[qid], positives=[corpus[d] for d in positive_ids],
                                    query_id=qid, positive_ids=positive_ids))
    if not examples:
        raise TrainingDataError(f"{qrels_path}: no query has a positive judgement")
    return examples, corpus


def load_examples(data: str | Path, qrels: str | Path | None = None, corpus: str | Path | None = None,
                  title_separator: str = TITLE_SEPARATOR) -> tuple[list[Example], dict[str, str] | None]:
    """Examples from a JSONL file or a BEIR folder, plus the corpus negatives can be mined from."""
    data = Path(data)
    if data.is_dir():
        if not (data / "corpus.jsonl").is_file():
            raise TrainingDataError(f"{data}: a BEIR training folder needs corpus.jsonl, queries.jsonl and qrels/")
        return read_beir(data, qrels, title_separator)
    if qrels:
        raise TrainingDataError(f"{data}: --qrels applies to a BEIR folder, not a JSONL file")
    examples = read_jsonl(data, title_separator)
    return examples, (read_corpus(corpus, title_separator) if corpus else None)


# -- hard negatives mined with Pyserini BM25 --------------------------------------------------------------
def corpus_fingerprint(corpus: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for docid in sorted(corpus):
        digest.update(docid.encode() + b"\0" + corpus[docid].encode() + b"\0")
    return digest.hexdigest()[:16]


def build_bm25_index(corpus: dict[str, str], index_dir: Path, threads: int = 1) -> Path:
    """A Lucene BM25 index of ``corpus`` (``contents`` = title + text) built with Pyserini; reused if complete."""
    import shutil  # noqa: PLC0415

    from pyserini_diffret.integration import setup  # noqa: PLC0415

    setup()  # Java set-up before Pyserini
    from pyserini.index.lucene import LuceneIndexer  # noqa: PLC0415

    index_dir = Path(index_dir)
    done = index_dir / ".complete"
    if done.is_file():
        return index_dir
    if index_dir.exists():
        shutil.rmtree(index_dir)  # an interrupted build
    index_dir.mkdir(parents=True)
    indexer = LuceneIndexer(str(index_dir), threads=threads)
    indexer.add_batch_dict([{"id": docid, "contents": text} for docid, text in corpus.items()])
    indexer.close()
    done.write_text("ok\n")
    return index_dir


def mine_bm25_negatives(examples: Sequence[Example], corpus: dict[str, str], index_dir: Path, *,
                        depth: int = 100, count: int = 30, skip: int = 0, threads: int = 1) -> None:
    """Fill each example's ``negatives`` with up to ``count`` BM25 hits from ranks ``skip..depth`` that are
    not among its positives (by id, or by text when ids are unknown). Existing negatives are kept."""
    from pyserini_diffret.integration import setup  # noqa: PLC0415

    setup()  # Java set-up before Pyserini
    from pyserini.search.lucene import LuceneSearcher  # noqa: PLC0415

    build_bm25_index(corpus, index_dir, threads=threads)
    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(0.9, 0.4)
    keys = [f"q{i}" for i in range(len(examples))]
    hits = searcher.batch_search([_bm25_query(e.query) for e in examples], keys, k=depth, threads=threads)
    for key, example in zip(keys, examples):
        positive_ids = set(example.positive_ids)
        positive_texts = set(example.positives)
        mined = []
        for hit in hits.get(key, [])[skip:]:
            if hit.docid in positive_ids or corpus[hit.docid] in positive_texts:
                continue
            mined.append(corpus[hit.docid])
            if len(mined) >= count:
                break
        seen = set(example.negatives)
        example.negatives.extend(text for text in mined if text not in seen)


def _bm25_query(text: str) -> str:
    # Lucene's query parser is not used by LuceneSearcher.search (it analyses the text), but very long
    # queries exceed the clause limit: keep the first 512 whitespace tokens.
    return " ".join(text.split()[:512])
