"""``python -m pyserini_diffret.beir_topics --data DIR --output DIR [--split test]``: a BEIR folder's judged
queries as a Pyserini topics TSV (``topics.tsv``) and its judgements as TREC qrels (``qrels.txt``), the
inputs that ``pyserini.search.*`` and ``pyserini.eval.trec_eval`` read.

Queries with empty text are dropped with a warning that counts them (Pyserini's TSV topic reader fails on
them); the judgements are all kept (``trec_eval -c`` scores a query without a run as 0). A bad query record
stops with ``file:line`` (``--skip-invalid``: skipped and counted). No query left is an error."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from pyserini_diffret.workflow.collection import (
    InputError, TopicStats, dropped_queries, find_beir_files, read_qrels, read_topics, write_topics_tsv,
    write_trec_qrels,
)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def convert(data: str | Path, output: str | Path, split: str = "test", skip_invalid: bool = False,
            log: Callable[[str], None] = _warn) -> tuple[Path, Path, int]:
    """Write ``topics.tsv`` (judged queries with text, in file order) and ``qrels.txt``; return them and the
    count. Dropped and skipped queries are reported through ``log``."""
    _, queries_path, qrels_path = find_beir_files(data, split)
    stats = TopicStats()
    topics, qrels = read_topics(queries_path, skip_invalid=skip_invalid, stats=stats), read_qrels(qrels_path)
    for line in dropped_queries(queries_path, stats, qrels):
        log(line)
    unknown = sorted(set(qrels) - set(topics) - set(stats.empty))
    if unknown and not stats.skipped:
        raise InputError(qrels_path, None, f"{len(unknown)} judged query ids have no query text "
                                           f"(first: {unknown[0]!r})")
    if unknown:  # some may be among the records skipped as invalid
        log(f"warning: {len(unknown)} judged query ids have no query text in {queries_path} (first: {unknown[0]!r}); "
            "they score 0")
    judged = {qid: text for qid, text in topics.items() if qid in qrels}
    if not judged:
        raise InputError(queries_path, None, f"no query with text among the {len(qrels)} judged queries of "
                                             f"{qrels_path}; nothing written")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    return (write_topics_tsv(judged, output / "topics.tsv"), write_trec_qrels(qrels, output / "qrels.txt"),
            len(judged))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyserini_diffret.beir_topics", description=__doc__)
    parser.add_argument("--data", required=True, help="BEIR folder (queries.jsonl, qrels/SPLIT.tsv)")
    parser.add_argument("--output", required=True, help="folder for topics.tsv and qrels.txt")
    parser.add_argument("--split", default="test", help="qrels split (default test)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip (and count) malformed query records instead of stopping at the first")
    args = parser.parse_args(argv)
    try:
        topics, qrels, count = convert(args.data, args.output, args.split, args.skip_invalid)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{count} judged queries -> {topics}; judgements -> {qrels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
