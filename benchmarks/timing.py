"""Side-by-side timing and text reading shared by the benchmarks (no torch import: the peer benchmark's
worker processes measure their own memory)."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Hashable


def interleaved_times(fns: dict[Hashable, Callable[[], object]], repeats: int,
                      warmup: bool = True) -> dict[Hashable, list[float]]:
    """Every wall time of each function; they are timed in turn each round, so load drifts hit all alike."""
    if warmup:
        for fn in fns.values():
            fn()  # warm-up: allocator, thread pool, tokenizer caches
    times: dict[Hashable, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_best(fns: dict[Hashable, Callable[[], object]], repeats: int) -> dict[Hashable, float]:
    """Best wall time of each function (``interleaved_times``)."""
    return {name: min(t) for name, t in interleaved_times(fns, repeats).items()}


def interleaved_median(fns: dict[Hashable, Callable[[], object]], repeats: int) -> dict[Hashable, float]:
    """Median wall time of each function (``interleaved_times``)."""
    return {name: statistics.median(t) for name, t in interleaved_times(fns, repeats).items()}


def read_texts(data: Path, docs: int, split: str | None = None) -> tuple[list[str], list[str]]:
    """The first ``docs`` passages (title + ". " + text) and the queries of a BEIR folder: every query, or
    with ``split`` (e.g. "test") those judged in ``qrels/<split>.tsv``, in the qrels' order.

    Read by the search-time readers (``workflow.collection``) with the title joined as
    ``train.data.read_corpus`` joins it (``TITLE_SEPARATOR``, ". "), without importing ``train`` (torch).
    """
    from pyserini_diffret.workflow import collection  # noqa: PLC0415

    passages = []
    for doc, _ in collection.CorpusReader(data / "corpus.jsonl").read():
        if doc is None:
            continue
        if len(passages) >= docs:
            break
        passages.append(f"{doc.title}. {doc.text}" if doc.title else doc.text)
    queries = collection.read_topics(data / "queries.jsonl")
    if split is None:
        return passages, list(queries.values())
    judged = collection.read_qrels(data / "qrels" / f"{split}.tsv")
    return passages, [queries[q] for q in judged if q in queries]
