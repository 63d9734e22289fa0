"""``DiffRetDocumentEncoder``: Pyserini's ``DocumentEncoder`` interface over a DiffRetriever model."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pyserini_diffret.integration import setup as _integration_setup

_integration_setup()  # Java 21+, offline guard and registration before Pyserini loads
from pyserini.encode import DocumentEncoder  # noqa: E402

from pyserini_diffret.core.representations import REPRESENTATIONS  # noqa: E402
from pyserini_diffret.core.text import DEFAULT_MAX_CHARS, clip_text  # noqa: E402
from pyserini_diffret.registry import DEFAULT_MODEL  # noqa: E402
from pyserini_diffret.shared import shared_model  # noqa: E402


class DiffRetDocumentEncoder(DocumentEncoder):
    """Encodes documents into impact vectors, single dense vectors or slot vectors.

    ``model_name``: ``"diffret"`` (embedded default) or a model folder. ``representation``:
    ``"impact"`` (default; ``list[dict[str, int]]``), ``"dense"`` (``float32 [N, H]``) or ``"slots"``
    (``float32 [N, K_doc, H]``). ``max_length``: text tokens per passage; ``None`` keeps the model's
    configured passage length. Pyserini's ``encode`` passes ``max_length`` on every call (256 unless
    given); it is honoured unless ``ignore_call_max_length`` is set (the ``--encoder diffret`` hook sets
    it when ``--max-length`` was not given explicitly). ``fp16``/``add_sep`` and other Pyserini keywords
    are accepted and ignored (the model's own dtype is used).
    """

    diffret_document = True

    def __init__(self, model_name: str | None = DEFAULT_MODEL, device: str | None = "cpu", representation: str = "impact",
                 max_length: int | None = None, batch_size: int | None = None,
                 max_chars: int | None = DEFAULT_MAX_CHARS, model: Any = None, **unused: Any) -> None:
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
        self.model_name = model_name or DEFAULT_MODEL
        self.device = device
        self.representation = representation
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.ignore_call_max_length = False
        self._model = model

    @property
    def model(self):
        if self._model is None:
            self._model = shared_model(self.model_name, self.device)
        return self._model

    @property
    def dimension(self) -> int:
        return int(self.model.hidden_size)

    def set_max_length(self, max_length: int | None) -> None:
        """Text tokens per passage from now on (``None``: the model's configured length)."""
        self.max_length = max_length
        if max_length is not None:
            self.model.set_lengths(document=max_length)

    def encode(self, texts: Sequence[str | None] | None = None, titles: Sequence[str | None] | None = None,
               max_length: int | None = None, representation: str | None = None, **kwargs: Any):
        if texts is None:
            texts = kwargs.get("contentss") or kwargs.get("contents")
            if texts is None:
                raise ValueError("DiffRetDocumentEncoder.encode needs texts")
        representation = representation or self.representation
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
        length = self.max_length if (self.ignore_call_max_length or max_length is None) else max_length
        if length is not None:
            self.model.set_lengths(document=length)
        clipped_texts = [clip_text(text, self.max_chars)[0] for text in texts]
        clipped_titles = None if titles is None else [clip_text(title, self.max_chars)[0] for title in titles]
        reps = self.model.encode_documents(clipped_texts, clipped_titles, batch_size=self.batch_size)
        if representation == "impact":
            return reps.impact
        if representation == "dense":
            return np.ascontiguousarray(reps.dense, dtype=np.float32)
        return np.ascontiguousarray(reps.slots, dtype=np.float32)
