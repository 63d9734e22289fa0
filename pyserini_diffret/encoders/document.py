"""``DiffRetDocumentEncoder``: Pyserini's ``DocumentEncoder`` interface over a DiffRetriever model."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pyserini.encode import DocumentEncoder

from pyserini_diffret.encoders.shared import shared_model

REPRESENTATIONS = ("impact", "dense", "slots")
# Texts longer than this many characters are cut before tokenising (see ``clip_text``).
DEFAULT_MAX_CHARS = 200_000


def clip_text(text: str | None, max_chars: int | None) -> tuple[str, bool]:
    """``text`` (``None`` -> ``""``) cut to ``max_chars`` characters; and whether it was cut.

    Only the first ``max_passage_length`` tokens are encoded anyway; the cut bounds the work of
    tokenising and of the sparse content filter (which reads the whole text) on enormous inputs.
    """
    text = text or ""
    if max_chars and len(text) > max_chars:
        return text[:max_chars], True
    return text, False


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

    def __init__(self, model_name: str | None = "diffret", device: str | None = "cpu", representation: str = "impact",
                 max_length: int | None = None, batch_size: int | None = None,
                 max_chars: int | None = DEFAULT_MAX_CHARS, model: Any = None, **unused: Any) -> None:
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
        self.model_name = model_name or "diffret"
        self.device = device
        self.representation = representation
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.ignore_call_max_length = False
        self.clipped = 0  # texts cut at max_chars so far
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
            set_passage_length(self.model, max_length)

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
            set_passage_length(self.model, length)
        clipped_texts = []
        for text in texts:
            text, cut = clip_text(text, self.max_chars)
            self.clipped += cut
            clipped_texts.append(text)
        clipped_titles = None
        if titles is not None:
            clipped_titles = [clip_text(title, self.max_chars)[0] for title in titles]
        reps = self.model.encode_documents(clipped_texts, clipped_titles, batch_size=self.batch_size)
        if representation == "impact":
            return reps.weights
        if representation == "dense":
            return np.ascontiguousarray(reps.dense, dtype=np.float32)
        return np.ascontiguousarray(reps.slots, dtype=np.float32)


def set_passage_length(model, max_length: int) -> None:
    """Change the passage text length of a loaded model; a clear error when the model cannot take it."""
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be an integer >= 1, got {max_length!r}")
    if model.config.max_passage_length == max_length:
        return
    previous = model.config.max_passage_length
    model.config.max_passage_length = max_length
    backbone = getattr(model.runtime, "backbone", None)
    if backbone is not None:
        from pyserini_diffret.model import check_lengths  # noqa: PLC0415

        try:
            check_lengths(backbone, model.config, model.prompts, model.source or "model")
        except ValueError:
            model.config.max_passage_length = previous
            raise
