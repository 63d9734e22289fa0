"""The paper's hybrid fusion, for any number of runs (TREC run files are read and written by ``workflow.trec``).

Per query, each run's top ``depth`` scores are min-max normalised to [0, 1]; a document's fused score
is the weighted sum of its normalised scores, a run that did not return it contributing 0:

    fused(d) = sum_i w_i * (s_i(d) - min_i) / (max_i - min_i)      (0 when run i did not return d)

With two runs ``alpha`` weights the first and ``1 - alpha`` the second (0.5/0.5 is the paper's setting;
Pyserini's ``interpolation`` uses the same convention). With N runs, ``--weights`` gives one weight per
run, in the order of ``--runs`` (without it every run gets 1/N). Weights must be finite, >= 0 and not all
0; they need not sum to 1 (the ranking depends only on their ratios; the scores written are the weighted
sums as given). When all of a run's scores for a query are equal (one hit, say) they normalise to 1. Ties
in the fused score are broken by document id.

Command::

    python -m pyserini_diffret.fusion --runs dense.trec sparse.trec --output hybrid.trec [--alpha 0.5]
    python -m pyserini_diffret.fusion --runs dense.trec sparse.trec bm25.trec --weights 0.3 0.2 0.5 --output fused.trec
    python -m pyserini_diffret.fusion --method rrf --runs a b --output fused.trec   # Pyserini's methods

Choosing weights on a development split (``--grid STEP --qrels QRELS``): every weight vector whose
entries are multiples of STEP summing to 1 (66 vectors for three runs and step 0.1) is scored with
trec_eval's nDCG@10 (``-c -m ndcg_cut.10``) against QRELS; the table is printed, best first, and the
best vector's fusion is written to ``--output``. Ties go to the vector closest to equal weights::

    python -m pyserini_diffret.fusion --runs dev/dense.trec dev/sparse.trec dev/bm25.trec --grid 0.1 \\
        --qrels dev/qrels.txt --output dev/best.trec

``--method`` ``minmax`` (default, the paper's) or one of Pyserini's: ``rrf``, ``interpolation``,
``average``, ``normalize`` (run by ``pyserini.fusion``'s own functions; they take no ``--weights``).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from pyserini_diffret.workflow.trec import Run, ranked, read_run, write_run

__all__ = ["Run", "check_weights", "fuse", "grid_search", "hybrid", "main", "min_max", "ranked", "read_run",
           "weight_grid", "write_run"]


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


def check_weights(weights: Sequence[float] | None, count: int, names: Sequence[str] | None = None) -> list[float]:
    """``weights`` as a list of ``count`` floats (``None``: equal shares), or a ``ValueError`` that says what is
    wrong: not one weight per run, a weight that is not a finite number >= 0, or all weights 0."""
    if weights is None:
        return [1.0 / count] * count if count else []
    weights = list(weights)
    runs = f"{count} run{'s' if count != 1 else ''}"
    if len(weights) != count:
        listed = f" ({', '.join(names)})" if names else ""
        raise ValueError(f"{len(weights)} weight{'s' if len(weights) != 1 else ''} for {runs}{listed}: give exactly "
                         "one weight per run, in the order of the runs")
    for index, weight in enumerate(weights):
        what = names[index] if names else f"run {index + 1}"
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"weight {weight!r} of {what} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"weight {weight!r} of {what} must be a finite number >= 0")
        weights[index] = value
    if not any(weights):
        raise ValueError(f"all {len(weights)} weights are 0: at least one run must have a positive weight")
    return weights


def _normalised(runs: Sequence[Run], depth: int | None) -> list[Run]:
    return [{qid: min_max(docs, depth) for qid, docs in run.items()} for run in runs]


def _combine(normalised: Sequence[Run], weights: Sequence[float], k: int | None) -> Run:
    qids = list(dict.fromkeys(q for run in normalised for q in run))
    fused: Run = {}
    for qid in qids:
        scores: dict[str, float] = {}
        for run, weight in zip(normalised, weights):
            for docid, value in run.get(qid, {}).items():
                scores[docid] = scores.get(docid, 0.0) + weight * value
        fused[qid] = dict(ranked(scores, k))
    return fused


def fuse(runs: Sequence[Run], weights: Sequence[float] | None = None, depth: int | None = 1000,
         k: int | None = 1000) -> Run:
    """The paper's fusion of any number of runs, one weight per run (default: equal shares)."""
    if not runs:
        return {}
    weights = check_weights(weights, len(runs))
    return _combine(_normalised(runs, depth), weights, k)


def hybrid(dense: Run, sparse: Run, alpha: float = 0.5, depth: int | None = 1000, k: int | None = 1000) -> Run:
    """``alpha * minmax(dense) + (1 - alpha) * minmax(sparse)`` per query (paper: alpha = 0.5)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha {alpha!r} must be in [0, 1] (the weights are alpha and 1 - alpha)")
    return fuse([dense, sparse], [alpha, 1.0 - alpha], depth, k)


def weight_grid(count: int, step: float = 0.1) -> list[tuple[float, ...]]:
    """Every ``count``-tuple of multiples of ``step`` (>= 0) that sums to 1, in lexicographic order."""
    steps = round(1.0 / step)
    if count < 1 or step <= 0 or abs(steps * step - 1.0) > 1e-9:
        raise ValueError(f"the grid step must divide 1 (0.1, 0.05, 0.25, ...), got {step!r}")

    def parts(n: int, total: int):
        if n == 1:
            yield (total,)
            return
        for first in range(total + 1):
            for rest in parts(n - 1, total - first):
                yield (first, *rest)

    return [tuple(round(i / steps, 10) for i in split) for split in parts(count, steps)]


def grid_search(runs: Sequence[Run], qrels: str | Path, step: float = 0.1, depth: int | None = 1000,
                score: Callable[[Path, Path], float] | None = None, workdir: str | Path | None = None
                ) -> list[tuple[tuple[float, ...], float]]:
    """``(weights, nDCG@10)`` for every vector of ``weight_grid(len(runs), step)``, best first (ties: closest to
    equal weights, then grid order). ``score(run_file, qrels)`` defaults to trec_eval's ``-c -m ndcg_cut.10``;
    the fused runs it reads hold each query's top 100 (enough for nDCG@10)."""
    score = score or _trec_eval_ndcg10
    grid = weight_grid(len(runs), step)
    normalised = _normalised(runs, depth)
    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "fused.trec"
        for weights in grid:
            write_run(_combine(normalised, weights, 100), path, "grid", 100)
            results.append((weights, score(path, Path(qrels))))
    equal = 1.0 / len(runs)
    order = {weights: i for i, (weights, _) in enumerate(results)}
    return sorted(results, key=lambda item: (-round(item[1], 4), sum((w - equal) ** 2 for w in item[0]),
                                             order[item[0]]))


def _trec_eval_ndcg10(run: Path, qrels: Path) -> float:
    from pyserini_diffret.workflow.evaluate import _call  # noqa: PLC0415

    values = _call(["-c", "-m", "ndcg_cut.10", str(qrels), str(run)])
    if "ndcg_cut_10" not in values:
        raise RuntimeError(f"trec_eval gave no ndcg_cut_10 for {run}")
    return values["ndcg_cut_10"]


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


def _weights_from_args(args, count: int) -> list[float]:
    """``--weights`` (one per run), or ``--alpha`` (two runs), or equal shares; conflicting options are errors."""
    if args.weights is not None and args.alpha is not None:
        raise ValueError("give --alpha (two runs) or --weights (one per run), not both")
    if args.alpha is not None:
        if count != 2:
            raise ValueError(f"--alpha weights the first of two runs; with {count} runs give --weights, one per run")
        if not 0.0 <= args.alpha <= 1.0:
            raise ValueError(f"--alpha {args.alpha:g} must be in [0, 1] (the weights are alpha and 1 - alpha)")
        return [args.alpha, 1.0 - args.alpha]
    return check_weights(args.weights, count, args.runs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyserini_diffret.fusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="TREC run files")
    parser.add_argument("--output", required=True)
    parser.add_argument("--method", choices=["minmax", "rrf", "interpolation", "average", "normalize"],
                        default="minmax")
    parser.add_argument("--alpha", type=float, default=None,
                        help="two runs: weight of the first, 1 - alpha of the second (default 0.5)")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="minmax: one weight per run, in the order of --runs (default: 1/N each)")
    parser.add_argument("--grid", type=float, default=None, metavar="STEP",
                        help="minmax: try every weight vector of multiples of STEP summing to 1, print nDCG@10 of "
                             "each against --qrels, write the best")
    parser.add_argument("--qrels", default=None, help="TREC or BEIR qrels for --grid")
    parser.add_argument("--depth", type=int, default=1000, help="top hits per query and run that are fused")
    parser.add_argument("--k", type=int, default=1000, help="hits per query written")
    parser.add_argument("--rrf.k", dest="rrf_k", type=int, default=60)
    parser.add_argument("--runtag", default=None)
    args = parser.parse_args(argv)
    try:
        if args.method != "minmax":
            if args.weights is not None or args.grid is not None:
                raise ValueError(f"--weights and --grid are for --method minmax; Pyserini's {args.method} takes none")
            if args.alpha is not None and args.method != "interpolation":
                raise ValueError(f"--alpha is for --method minmax or interpolation, not {args.method}")
            _pyserini_fusion(args.method, args.runs, args.output, args.runtag or "pyserini.fusion",
                             0.5 if args.alpha is None else args.alpha, args.rrf_k, args.depth, args.k)
            print(f"fused {len(args.runs)} runs ({args.method}, Pyserini) -> {args.output}")
            return 0
        if args.grid is not None:
            if args.weights is not None or args.alpha is not None:
                raise ValueError("--grid chooses the weights: give neither --weights nor --alpha with it")
            if not args.qrels:
                raise ValueError("--grid needs --qrels (the judgements of the development queries)")
            weight_grid(len(args.runs), args.grid)  # a bad step fails before any file is read
            weights = None
        else:
            weights = _weights_from_args(args, len(args.runs))
        runs = [read_run(path) for path in args.runs]
        if args.grid is not None:
            with tempfile.TemporaryDirectory() as tmp:
                table = grid_search(runs, _trec_qrels(args.qrels, Path(tmp)), args.grid, args.depth, workdir=tmp)
            print("weights (" + ", ".join(args.runs) + ")\tnDCG@10")
            for vector, value in table:
                print(" ".join(f"{w:g}" for w in vector) + f"\t{value:.4f}")
            weights = list(table[0][0])
        fused = fuse(runs, weights, args.depth, args.k)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_run(fused, args.output, args.runtag or "diffret-hybrid", args.k)
    shown = ", ".join(f"{w:g}" for w in weights)
    chosen = f" (best of the grid, nDCG@10 {table[0][1]:.4f})" if args.grid is not None else ""
    print(f"fused {len(runs)} runs (per-query min-max, weights {shown}){chosen} -> {args.output}")
    return 0


def _trec_qrels(path: str, folder: Path) -> Path:
    """``path`` if it is TREC qrels, else a TREC copy (in ``folder``) of a BEIR qrels TSV (trec_eval reads TREC's)."""
    from pyserini_diffret.workflow.collection import read_qrels, write_trec_qrels  # noqa: PLC0415

    with open(path, encoding="utf-8") as f:
        first = next((line.split() for line in f if line.strip()), [])
    if len(first) == 4:
        return Path(path)
    return write_trec_qrels(read_qrels(path), folder / (Path(path).stem + ".trec-qrels.txt"))
