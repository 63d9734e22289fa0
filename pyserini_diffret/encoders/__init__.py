"""DiffRetriever encoders in Pyserini's shapes.

- ``DiffRetDocumentEncoder``: a Pyserini ``DocumentEncoder``; ``encode(texts, titles=None, ...)`` returns
  impact vectors (``list[dict[str, int]]``, for a ``JsonVectorCollection``), single dense vectors
  (``float32 [N, H]``, for a FAISS index) or all slot vectors (``float32 [N, K, H]``), as configured.
- ``DiffRetImpactQueryEncoder``: for ``LuceneImpactSearcher``; ``encode(str) -> dict[str, int]``.
- ``DiffRetDenseQueryEncoder``: for ``FaissSearcher``; ``encode(str) -> float32 [H]``, ``encode_batch``.

All take ``(model_name, device="cpu")`` like Pyserini's encoders (``model_name`` is ``"diffret"``, the
embedded default, or a model folder) and load the model on first use. Importing this package is cheap:
the classes, which subclass Pyserini's, are imported on first access.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "DiffRetDocumentEncoder": "pyserini_diffret.encoders.document",
    "DiffRetImpactQueryEncoder": "pyserini_diffret.encoders.query",
    "DiffRetDenseQueryEncoder": "pyserini_diffret.encoders.query",
}

if TYPE_CHECKING:
    from pyserini_diffret.encoders.document import DiffRetDocumentEncoder
    from pyserini_diffret.encoders.query import DiffRetDenseQueryEncoder, DiffRetImpactQueryEncoder


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyserini_diffret.encoders' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = list(_LAZY)
