"""Side-by-side timing shared by the benchmarks."""
from __future__ import annotations

import time
from typing import Callable, Hashable


def interleaved_best(fns: dict[Hashable, Callable[[], object]], repeats: int) -> dict[Hashable, float]:
    """Best wall time of each function; they are timed in turn each round, so load drifts hit all alike."""
    for fn in fns.values():
        fn()  # warm-up: allocator, thread pool, tokenizer caches
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
