"""The paper's hybrid fusion (TREC run files are read and written by ``workflow.trec``).

Per query, each run's top ``depth`` scores are min-max normalised to [0, 1]; a document's fused score
is the weighted sum of its normalised scores, a run that did not return it contributing 0. With two runs
``alpha`` weights the first and ``1 - alpha`` the second (0.5/0.5 is the paper's setting; Pyserini's
``interpolation`` uses the same convention). When all of a run's scores for a query are equal (one hit,
say) they normalise to 1. Ties in the fused score are broken by document id.

Command::

    python -m pyserini_diffret.fusion --runs dense.trec sparse.trec --output hybrid.trec [--alpha 0.5]
    python -m pyserini_diffret.fusion --runs a b c --weights 0.5 0.3 0.2 --output fused.trec
    python -m pyserini_diffret.fusion --method rrf --runs a b --output fused.trec   # Pyserini's methods

``--method`` ``minmax`` (default, the paper's) or one of Pyserini's: ``rrf``, ``interpolation``,
``average``, ``normalize`` (run by ``pyserini.fusion``'s own functions).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pyserini_diffret.workflow.trec import Run, ranked, read_run, write_run

__all__ = ["Run", "fuse", "hybrid", "main", "min_max", "ranked", "read_run", "write_run"]


def min_max(docs: dict[str, float], depth: int | None = 1000) -> dict[str, float]:
    """One query's top ``depth`` scores scaled to [0, 1] (all equal -> 1)."""
    top = ranked(docs, depth)
    if not top:
        return {}
    high, low = top[0][1], top[-1][1]
    if high == low:
        return {docid: 1.0 for docid, _ in top}
    span = high - low
    return {docid: (score - low) / span for docid, score in top}


def fuse(runs: Sequence[Run], weights: Sequence[float] | None = None, depth: int | None = 1000,
         k: int | None = 1000) -> Run:
    """The paper's fusion of any number of runs (weights default to equal shares)."""
    if not runs:
        return {}
    weights = list(weights) if weights is not None else [1.0 / len(runs)] * len(runs)
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs")
    qids = list(dict.fromkeys(q for run in runs for q in run))
    fused: Run = {}
    for qid in qids:
        scores: dict[str, float] = {}
        for run, weight in zip(runs, weights):
            for docid, value in min_max(run.get(qid, {}), depth).items():
                scores[docid] = scores.get(docid, 0.0) + weight * value
        fused[qid] = dict(ranked(scores, k))
    return fused


def hybrid(dense: Run, sparse: Run, alpha: float = 0.5, depth: int | None = 1000, k: int | None = 1000) -> Run:
    """``alpha * minmax(dense) + (1 - alpha) * minmax(sparse)`` per query (paper: alpha = 0.5)."""
    return fuse([dense, sparse], [alpha, 1.0 - alpha], depth, k)


def _pyserini_fusion(method: str, paths: Sequence[str], output: str, tag: str, alpha: float, rrf_k: int,
                     depth: int, k: int) -> None:
    from pyserini_diffret.integration import setup  # noqa: PLC0415

    setup()  # the offline guard before Pyserini loads
    from pyserini.fusion import average, interpolation, normalize, reciprocal_rank_fusion  # noqa: PLC0415
    from pyserini.trectools import TrecRun  # noqa: PLC0415

    runs = [TrecRun(filepath=path) for path in paths]
    if method == "rrf":
        fused = reciprocal_rank_fusion(runs, rrf_k=rrf_k, depth=depth, k=k)
    elif method == "interpolation":
        fused = interpolation(runs, alpha=alpha, depth=depth, k=k)
    elif method == "average":
        fused = average(runs, depth=depth, k=k)
    else:
        fused = normalize(runs, depth=depth, k=k)
    fused.save_to_txt(output, tag=tag)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyserini_diffret.fusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="TREC run files")
    parser.add_argument("--output", required=True)
    parser.add_argument("--method", choices=["minmax", "rrf", "interpolation", "average", "normalize"],
                        default="minmax")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the first of two runs")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per run (minmax)")
    parser.add_argument("--depth", type=int, default=1000, help="top hits per query and run that are fused")
    parser.add_argument("--k", type=int, default=1000, help="hits per query written")
    parser.add_argument("--rrf.k", dest="rrf_k", type=int, default=60)
    parser.add_argument("--runtag", default=None)
    args = parser.parse_args(argv)
    try:
        if args.method != "minmax":
            _pyserini_fusion(args.method, args.runs, args.output, args.runtag or "pyserini.fusion", args.alpha,
                             args.rrf_k, args.depth, args.k)
            print(f"fused {len(args.runs)} runs ({args.method}, Pyserini) -> {args.output}")
            return 0
        runs = [read_run(path) for path in args.runs]
        if args.weights is not None:
            weights = args.weights
        elif len(runs) == 2:
            weights = [args.alpha, 1.0 - args.alpha]
        else:
            weights = None
        fused = fuse(runs, weights, args.depth, args.k)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_run(fused, args.output, args.runtag or "diffret-hybrid", args.k)
    shown = ", ".join(f"{w:g}" for w in (weights or [1.0 / len(runs)] * len(runs)))
    print(f"fused {len(runs)} runs (per-query min-max, weights {shown}) -> {args.output}")
    return 0
