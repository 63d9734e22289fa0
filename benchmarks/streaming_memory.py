"""Peak memory of the streaming API: does it stay flat when the corpus grows?

Encodes a synthetic corpus of N and of 4N documents through ``DiffRetriever.embed_documents`` (documents
made one at a time by a generator, results dropped batch by batch), in one process (``--parallel 1``)
and in worker processes (``--parallel 2``...). Each measurement runs in a fresh Python process, so that
its peaks are its own. Peak memory is the largest sum of resident memory over the process and its workers,
sampled every 20 ms with psutil; without psutil, the kernel's peaks (``getrusage``: this process, and the
largest worker, counted once per worker) stand in for it. A streaming encoder shows a 4N/N ratio near 1.

    python benchmarks/streaming_memory.py [--documents 2000] [--parallel 1 2] [--batch-size 32]
                                          [--model diffret] [--words 150]
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = ("vitamin bone fracture risk adults trial placebo dose cohort protein cell receptor expression tumour "
         "growth patients treatment outcome survival therapy gene mutation signal pathway response immune "
         "infection virus antibody vaccine sample analysis model effect increase decrease level study").split()


def documents(count: int, words: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """``count`` synthetic (text, title) pairs, made one at a time."""
    rng = random.Random(seed)
    for _ in range(count):
        length = rng.randint(words // 2, words)
        yield " ".join(rng.choices(WORDS, k=length)) + ".", " ".join(rng.choices(WORDS, k=5))


class PeakMemory:
    """The largest total resident memory of this process and its children, sampled in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil  # noqa: PLC0415

        self.process = psutil.Process()
        self.error = psutil.Error
        self.interval = interval
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            total = self.process.memory_info().rss
            for child in self.process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except self.error:  # a worker that just ended
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak


def measure(args: argparse.Namespace, parallel: int) -> dict:
    """One run, in this process: encode ``args.documents`` documents, report time and peaks."""
    from pyserini_diffret import load_model  # noqa: PLC0415

    try:
        sampler = PeakMemory()
    except ImportError:
        sampler = None
    model = load_model(args.model)
    started = time.perf_counter()
    encoded = 0
    for reps in model.embed_documents(documents(args.documents, args.words), batch_size=args.batch_size,
                                      parallel=parallel):
        encoded += len(reps)  # results are dropped: the stream must not keep them
    seconds = time.perf_counter() - started
    sampled = sampler.stop() if sampler else None
    kib = 1024  # ru_maxrss is in KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib
    largest_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib
    workers = parallel if parallel > 1 else 0
    return {"parallel": parallel, "documents": encoded, "seconds": seconds,
            "peak": sampled if sampled is not None else own + workers * largest_child,
            "sampled": sampled is not None, "own_peak": own, "largest_worker_peak": largest_child if workers else 0}


def run_once(args: argparse.Namespace, documents_count: int, parallel: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", "--documents", str(documents_count),
               "--parallel", str(parallel), "--batch-size", str(args.batch_size), "--model", str(args.model),
               "--words", str(args.words)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed ({' '.join(command)}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=2000, help="N: runs encode N and 4N documents")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="diffret", help="model name or folder (default: the embedded default)")
    parser.add_argument("--words", type=int, default=150, help="longest synthetic text, in words")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one run (internal)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args, args.parallel[0])))
        return
    mib = 1024 * 1024
    print(f"model {args.model}, batch size {args.batch_size}, texts of {args.words // 2}-{args.words} words")
    print(f"{'parallel':>8} {'documents':>9} {'seconds':>8} {'docs/s':>7} {'peak MiB':>9} {'own MiB':>8} "
          f"{'worker MiB':>10}", flush=True)
    for parallel in args.parallel:
        peaks = []
        for count in (args.documents, 4 * args.documents):
            row = run_once(args, count, parallel)
            peaks.append(row["peak"])
            rate = row["documents"] / row["seconds"]
            print(f"{parallel:>8} {row['documents']:>9} {row['seconds']:>8.1f} {rate:>7.1f} "
                  f"{row['peak'] / mib:>9.1f}{'' if row['sampled'] else '*'} {row['own_peak'] / mib:>8.1f} "
                  f"{row['largest_worker_peak'] / mib:>10.1f}", flush=True)
        print(f"parallel {parallel}: peak memory 4N/N = {peaks[1] / peaks[0]:.3f}")
    print("peak: sampled total of the process and its workers (* without psutil: own + workers x largest worker)")


if __name__ == "__main__":  # worker processes (spawn) import this file: nothing may run on import
    main()
