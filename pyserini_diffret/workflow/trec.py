"""TREC run files: ``qid Q0 docid rank score tag``, one hit a line, scores printed with six decimals.

The one reader and writer of run files for the commands (``run``, ``search_multi``, ``fusion``), the training
evaluation and the benchmarks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

Run = dict[str, dict[str, float]]  # query id -> document id -> score


def read_run(path: str | Path) -> Run:
    """A TREC run file (``qid Q0 docid rank score tag``)."""
    path = Path(path)
    run: Run = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 5:
                raise ValueError(f"{path}:{number}: expected 'qid Q0 docid rank score [tag]'")
            try:
                score = float(parts[4])
            except ValueError:
                raise ValueError(f"{path}:{number}: score {parts[4]!r} is not a number") from None
            docs = run.setdefault(parts[0], {})
            if parts[2] not in docs:  # the first (best) line of a duplicate wins
                docs[parts[2]] = score
    return run


def ranked(docs: Mapping[str, float], k: int | None = None) -> list[tuple[str, float]]:
    """``(docid, score)`` by score descending, ties by document id; the first ``k`` (all when ``k`` is None/0)."""
    items = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
    return items[:k] if k else items


def write_run(run: Mapping[str, Mapping[str, float] | Sequence], path: str | Path, tag: str = "diffret",
              k: int | None = None) -> Path:
    """Write ``run`` (queries in its order) as a TREC run file; at most ``k`` hits per query.

    A query's hits are either ``{docid: score}`` (ranked by score, ties by document id) or a sequence already
    in rank order of hits with ``docid`` and ``score`` attributes (``MultiVectorSearcher``'s) or of
    ``(docid, score)`` pairs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for qid, hits in run.items():
            if isinstance(hits, Mapping):
                order = ranked(hits, k)
            else:
                order = [(h.docid, h.score) if hasattr(h, "docid") else h for h in (hits[:k] if k else hits)]
            for rank, (docid, score) in enumerate(order, 1):
                f.write(f"{qid} Q0 {docid} {rank} {float(score):.6f} {tag}\n")
    return path
