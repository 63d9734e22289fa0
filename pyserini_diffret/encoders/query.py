"""Query encoders for Pyserini's searchers: impact (``LuceneImpactSearcher``) and dense (``FaissSearcher``).

Both share one loaded model per process and a cache of encoded queries (``shared``): a hybrid search
encodes each query once. Use ``min_idf=-1`` with ``LuceneImpactSearcher`` to keep query terms that occur
in every document (the registration hook makes that the default for ``--encoder diffret``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pyserini_diffret.integration import setup as _integration_setup

_integration_setup()  # Java 21+, offline guard and registration before Pyserini loads
from pyserini.encode import QueryEncoder  # noqa: E402

from pyserini_diffret.registry import DEFAULT_MODEL  # noqa: E402
from pyserini_diffret.shared import query_cache, shared_model  # noqa: E402


class _DiffRetQueryEncoder(QueryEncoder):
    def __init__(self, model_name: str | None = None, device: str | None = None, *, encoder_dir: str | None = None,
                 model: Any = None, **unused: Any) -> None:
        super().__init__()
        self.model_name = model_name or encoder_dir or DEFAULT_MODEL
        self.device = device
        self._model = model
        self.has_model = True

    @property
    def model(self):
        if self._model is None:
            self._model = shared_model(self.model_name, self.device)
        return self._model

    def _encoded(self, texts: Sequence[str]):
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"query {i} is {type(text).__name__}, not str")
        return query_cache(self.model).get(texts)


class DiffRetImpactQueryEncoder(_DiffRetQueryEncoder):
    """``encode(query) -> {token: int}`` (Python ints > 0) for ``LuceneImpactSearcher``."""

    diffret_impact = True

    def encode(self, text: str, **kwargs: Any) -> dict[str, int]:
        return self._encoded([text])[0].impact

    def encode_batch(self, texts: Sequence[str], **kwargs: Any) -> list[dict[str, int]]:
        return [item.impact for item in self._encoded(texts)]


class DiffRetDenseQueryEncoder(_DiffRetQueryEncoder):
    """``encode(query) -> float32 [H]`` (the single vector) for ``FaissSearcher``; ``encode_slots`` gives
    ``float32 [K_q, H]`` for multi-vector (MaxSim) search."""

    diffret_dense = True

    @property
    def dimension(self) -> int:
        return int(self.model.hidden_size)

    def encode(self, text: str, **kwargs: Any) -> np.ndarray:
        return np.array(self._encoded([text])[0].dense, dtype=np.float32)

    def encode_batch(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        items = self._encoded(texts)
        if not items:
            return np.zeros((0, self.dimension), np.float32)
        return np.stack([item.dense for item in items]).astype(np.float32, copy=False)

    def encode_slots(self, texts: Sequence[str]) -> np.ndarray:
        items = self._encoded(texts)
        if not items:
            return np.zeros((0, self.model.k_query, self.dimension), np.float32)
        return np.stack([item.slots for item in items]).astype(np.float32, copy=False)
