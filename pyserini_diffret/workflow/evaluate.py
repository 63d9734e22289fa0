"""Evaluation with Pyserini's ``trec_eval``: the ``trec_eval`` class of Pyserini's bundled Anserini jar,
run as ``java -cp <jar> trec_eval ...`` exactly as ``python -m pyserini.eval.trec_eval`` runs it (without
that module's pandas pre-pass over the run file, which is for MS MARCO-format runs and costs ~1 s per call).

Metrics: nDCG@10 (``ndcg_cut.10``), MRR@10 (``recip_rank`` with ``-M 10``), R@100 and R@1000
(``recall.100,1000``), all with ``-c`` (queries without results count as zero). Two trec_eval calls per
run (``-M`` applies to every measure of a call); the calls of several runs go two at a time.
"""
from __future__ import annotations

import glob
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

METRICS = {
    "nDCG@10": "ndcg_cut_10",
    "MRR@10": "recip_rank",
    "R@100": "recall_100",
    "R@1000": "recall_1000",
}


def trec_eval_command() -> list[str]:
    """``java -cp <Pyserini's jar> trec_eval`` (Java 21+ on PATH: ``integration.setup()`` sees to it)."""
    from pyserini_diffret.integration import setup  # noqa: PLC0415

    setup()  # puts a Java 21+ runtime first on PATH

    jars = sorted(glob.glob(str(resources.files("pyserini") / "resources" / "jars" / "*.jar")))
    if not jars:
        raise FileNotFoundError("Pyserini's Anserini jar was not found (pyserini/resources/jars)")
    return ["java", "-cp", jars[0], "trec_eval"]


def _call(args: list[str]) -> dict[str, float]:
    proc = subprocess.run([*trec_eval_command(), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"trec_eval {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    values = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "all":
            try:
                values[parts[0]] = float(parts[2])
            except ValueError:
                continue
    return values


_CALLS = (["-c", "-m", "ndcg_cut.10", "-m", "recall.100,1000"], ["-c", "-M", "10", "-m", "recip_rank"])


def evaluate_runs(runs: dict[str, str | Path], qrels: str | Path, workers: int = 2) -> dict[str, dict[str, float]]:
    """nDCG@10, MRR@10, R@100, R@1000 of each TREC run against TREC qrels, trec_eval calls running ``workers``
    at a time."""
    qrels = str(qrels)
    jobs = {(name, i): [*flags, qrels, str(path)] for name, path in runs.items() if Path(path).stat().st_size
            for i, flags in enumerate(_CALLS)}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        answers = dict(zip(jobs, pool.map(_call, jobs.values())))
    return {name: _metrics(name, path, answers) for name, path in runs.items()}


def _metrics(name: str, run: str | Path, answers: dict) -> dict[str, float]:
    if (name, 0) not in answers:  # an empty run file
        return {metric: 0.0 for metric in METRICS}
    values = {**answers[(name, 0)], **answers[(name, 1)]}
    missing = [code for code in METRICS.values() if code not in values]
    if missing:
        raise RuntimeError(f"trec_eval gave no {', '.join(missing)} for {run}")
    return {metric: values[code] for metric, code in METRICS.items()}


def markdown_table(results: dict[str, dict[str, float]], title: str = "") -> str:
    names = list(METRICS)
    lines = [f"| run | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for run, values in results.items():
        lines.append(f"| {run} | " + " | ".join(f"{values[name]:.4f}" for name in names) + " |")
    table = "\n".join(lines) + "\n"
    return (f"{title}\n\n{table}" if title else table)
