"""``python -m pyserini_diffret.beir_topics --data DIR --output DIR [--split test]``: a BEIR folder's judged
queries as a Pyserini topics TSV (``topics.tsv``) and its judgements as TREC qrels (``qrels.txt``), the
inputs that ``pyserini.search.*`` and ``pyserini.eval.trec_eval`` read."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from pyserini_diffret.workflow.collection import (
    InputError, find_beir_files, read_qrels, read_topics, write_topics_tsv, write_trec_qrels,
)


def convert(data: str | Path, output: str | Path, split: str = "test") -> tuple[Path, Path, int]:
    """Write ``topics.tsv`` (judged queries only, in file order) and ``qrels.txt``; return them and the count."""
    _, queries_path, qrels_path = find_beir_files(data, split)
    topics, qrels = read_topics(queries_path), read_qrels(qrels_path)
    unknown = sorted(set(qrels) - set(topics))
    if unknown:
        raise InputError(qrels_path, None, f"{len(unknown)} judged query ids have no query text "
                                           f"(first: {unknown[0]!r})")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    judged = {qid: text for qid, text in topics.items() if qid in qrels}
    return (write_topics_tsv(judged, output / "topics.tsv"), write_trec_qrels(qrels, output / "qrels.txt"),
            len(judged))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyserini_diffret.beir_topics", description=__doc__)
    parser.add_argument("--data", required=True, help="BEIR folder (queries.jsonl, qrels/SPLIT.tsv)")
    parser.add_argument("--output", required=True, help="folder for topics.tsv and qrels.txt")
    parser.add_argument("--split", default="test", help="qrels split (default test)")
    args = parser.parse_args(argv)
    try:
        topics, qrels, count = convert(args.data, args.output, args.split)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{count} judged queries -> {topics}; judgements -> {qrels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
