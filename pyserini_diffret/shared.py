"""One loaded model per (model, device, options) and process, and a small cache of encoded queries.

Pyserini's hybrid command builds a dense and a sparse query encoder from the same ``--encoder`` name:
both get the same loaded model here, and a query encoded for one side is not encoded again for the
other (one backbone pass gives both representations). Nothing here imports torch or Pyserini; whether the
device exists is checked by ``load_model`` with the runtime that will use it.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from pyserini_diffret.core.devices import canonical_device
from pyserini_diffret.model import load_model
from pyserini_diffret.registry import DEFAULT_MODEL, resolve_model

QUERY_CACHE_SIZE = 2048

_lock = threading.RLock()
_models: dict[tuple, Any] = {}
_caches: dict[int, "QueryCache"] = {}


def shared_model(name: str | os.PathLike | None = None, device: str | None = None, **options: Any):
    """The loaded model for ``name`` on ``device`` (loaded once per process and set of options)."""
    device = canonical_device(device)
    path = resolve_model(name or DEFAULT_MODEL).resolve()
    key = (str(path), device, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _lock:
        model = _models.get(key)
        if model is None:
            model = load_model(path, device=device, **options)
            _models[key] = model
        return model


@dataclass
class EncodedQuery:
    dense: np.ndarray  # [H] float32, single vector
    slots: np.ndarray  # [Kq, H] float32
    term_ids: np.ndarray  # vocabulary ids with a non-zero impact
    term_impacts: np.ndarray  # their integer impacts
    vocabulary: np.ndarray

    @property
    def impact(self) -> dict[str, int]:
        return dict(zip(self.vocabulary[self.term_ids].tolist(), self.term_impacts.tolist()))


class QueryCache:
    """Least-recently-used map from query text to its encodings, filled in batches."""

    def __init__(self, model, size: int = QUERY_CACHE_SIZE) -> None:
        self.model = model
        self.size = size
        self._items: OrderedDict[str, EncodedQuery] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, texts: Sequence[str]) -> list[EncodedQuery]:
        texts = list(texts)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._items))
            found: dict[str, EncodedQuery] = {}
            if missing:
                reps = self.model.encode_queries(missing)
                for i, text in enumerate(missing):
                    found[text] = EncodedQuery(reps.dense[i], reps.slots[i], reps.term_ids[i], reps.term_impacts[i],
                                               reps.vocabulary)
            out = []
            for text in texts:
                item = found.get(text) or self._items[text]
                out.append(item)
            for text, item in found.items():
                self._items[text] = item
            for text in texts:
                self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return out


def query_cache(model) -> QueryCache:
    with _lock:
        cache = _caches.get(id(model))
        if cache is None or cache.model is not model:
            cache = _caches[id(model)] = QueryCache(model)
        return cache


def clear() -> None:
    """Forget every loaded model and cached query (tests)."""
    with _lock:
        _models.clear()
        _caches.clear()
