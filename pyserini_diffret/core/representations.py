"""Host-side post-processing shared by every runtime, and the result type.

Inside the engine the impact vectors stay as vocabulary ids and integer values; token strings (the terms
a Lucene impact index and Pyserini's impact searcher read) are made only when ``Representations.impact``
is read, at the edge where they are written or handed to Pyserini.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REPRESENTATIONS = ("impact", "dense", "slots")  # what an encoding run can write: integer impacts, single vectors, slots


@dataclass
class Representations:
    """Encodings of N texts.

    ``dense``: float32 ``[N, H]``, the paper's single-vector mode (mean of the kept unit slot vectors,
    not re-normalised). ``slots``: float32 ``[N, K, H]``, each slot L2-normalised, truncated slots all
    zero. ``term_ids``/``term_impacts``: per text, the vocabulary ids with a non-zero impact (ascending)
    and their integer impacts. ``impact``: the same as ``{token string: int > 0}`` per text.
    """

    dense: np.ndarray
    slots: np.ndarray
    term_ids: list[np.ndarray] = field(default_factory=list)
    term_impacts: list[np.ndarray] = field(default_factory=list)
    vocabulary: np.ndarray | None = None  # token string of each vocabulary id

    def __len__(self) -> int:
        return len(self.term_ids)

    @property
    def impact(self) -> list[dict[str, int]]:
        """One impact vector per text, ``{token string: int > 0}`` (Python ints, as Lucene's impact searcher needs)."""
        if self.vocabulary is None:
            raise ValueError("these representations carry no vocabulary to name their terms")
        return [dict(zip(self.vocabulary[ids].tolist(), values.tolist()))
                for ids, values in zip(self.term_ids, self.term_impacts)]

    @property
    def weights(self) -> list[dict[str, int]]:
        """The former name of ``impact``."""
        return self.impact

    @classmethod
    def empty(cls, k: int, hidden_size: int, vocabulary: np.ndarray | None = None) -> "Representations":
        return cls(np.zeros((0, hidden_size), np.float32), np.zeros((0, k, hidden_size), np.float32), [], [], vocabulary)

    @classmethod
    def concat(cls, parts: list["Representations"]) -> "Representations":
        return cls(
            np.concatenate([p.dense for p in parts]),
            np.concatenate([p.slots for p in parts]),
            [ids for p in parts for ids in p.term_ids],
            [values for p in parts for values in p.term_impacts],
            parts[0].vocabulary if parts else None,
        )

    def take(self, order: np.ndarray) -> "Representations":
        return Representations(self.dense[order], self.slots[order], [self.term_ids[i] for i in order],
                               [self.term_impacts[i] for i in order], self.vocabulary)


def single_vectors(slots: np.ndarray) -> np.ndarray:
    """Mean over the kept (non-zero) slots; all-zero when every slot was truncated."""
    kept = np.any(slots != 0, axis=-1)
    counts = np.maximum(kept.sum(axis=1, keepdims=True), 1).astype(np.float32)
    return (slots.sum(axis=1) / counts).astype(np.float32)


def pool_content_scores(scores: np.ndarray, terms_per_slot: int) -> np.ndarray:
    """``[B, A]`` term weights from ``[B, K, A]`` slot scores (``relu(logit)`` at the content ids): per slot the
    ``terms_per_slot`` largest kept, ``log(1 + s)``, max over the slots (DESIGN 1.3).

    ``log1p`` is monotone, so it runs once, on the pooled maximum. Written in numpy, not in the graph: the
    top-k needs a ``k`` of at most A, which an exported graph would have to fix in advance.
    """
    scores = np.asarray(scores, dtype=np.float32)
    width = scores.shape[-1]
    if terms_per_slot < width:
        dropped = np.argpartition(scores, width - terms_per_slot - 1, axis=-1)[..., :width - terms_per_slot]
        scores = scores.copy()
        np.put_along_axis(scores, dropped, 0.0, axis=-1)
    return np.log1p(scores.max(axis=1, initial=0.0))


def quantise(term_weights: np.ndarray, content_ids: np.ndarray, scale: float,
             rule: str = "round") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Integer impacts of ``[N, A]`` term weights at ``content_ids`` (ascending per row, then padding), zeros
    dropped: per row, the vocabulary ids (ascending) and their impacts.

    ``rule``: ``round`` gives ``round(w * scale)`` (half to even, as numpy and torch round; the reference's
    fine-tuned encode path), ``truncate`` gives ``int(w * scale)`` (its zero-shot read-out). Both are
    monotone, so quantising after the max-pool over slots equals the reference's pooling of quantised slots.
    """
    scaled = np.asarray(term_weights, dtype=np.float32) * np.float32(scale)
    quantised = (np.rint(scaled) if rule == "round" else np.trunc(scaled)).astype(np.int64)
    kept = [np.flatnonzero(row > 0) for row in quantised]
    return [ids[k] for ids, k in zip(content_ids, kept)], [row[k] for row, k in zip(quantised, kept)]


def maxsim(query_slots: np.ndarray, doc_slots: np.ndarray) -> np.ndarray:
    """ColBERT MaxSim ``sum_i max(0, max_j q_i . d_j)`` of one query ``[Kq, H]`` against ``[N, Kp, H]``."""
    sims = np.einsum("qh,nph->nqp", query_slots, doc_slots, optimize=True)
    return np.maximum(sims.max(axis=2), 0.0).sum(axis=1)
