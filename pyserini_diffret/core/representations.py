"""Host-side post-processing shared by every runtime, and the result type."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Representations:
    """Encodings of N texts.

    ``dense``: float32 ``[N, H]``, the paper's single-vector mode (mean of the kept unit slot vectors,
    not re-normalised). ``slots``: float32 ``[N, K, H]``, each slot L2-normalised, truncated slots all
    zero. ``weights``: one impact vector per text, ``{token string: int > 0}``.
    """

    dense: np.ndarray
    slots: np.ndarray
    weights: list[dict[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.weights)

    @classmethod
    def empty(cls, k: int, hidden_size: int) -> "Representations":
        return cls(np.zeros((0, hidden_size), np.float32), np.zeros((0, k, hidden_size), np.float32), [])

    @classmethod
    def concat(cls, parts: list["Representations"]) -> "Representations":
        return cls(
            np.concatenate([p.dense for p in parts]),
            np.concatenate([p.slots for p in parts]),
            [w for p in parts for w in p.weights],
        )

    def take(self, order: np.ndarray) -> "Representations":
        return Representations(self.dense[order], self.slots[order], [self.weights[i] for i in order])


def single_vectors(slots: np.ndarray) -> np.ndarray:
    """Mean over the kept (non-zero) slots; all-zero when every slot was truncated."""
    kept = np.any(slots != 0, axis=-1)
    counts = np.maximum(kept.sum(axis=1, keepdims=True), 1).astype(np.float32)
    return (slots.sum(axis=1) / counts).astype(np.float32)


def quantise(term_weights: np.ndarray, scale: float, tokens: np.ndarray) -> list[dict[str, int]]:
    """``round(w * scale)`` (half to even, as numpy and torch round), zeros dropped, keyed by token."""
    quantised = np.rint(term_weights.astype(np.float32) * np.float32(scale)).astype(np.int64)
    out = []
    for row in quantised:
        ids = np.flatnonzero(row > 0)
        out.append(dict(zip(tokens[ids].tolist(), row[ids].tolist())))
    return out


def maxsim(query_slots: np.ndarray, doc_slots: np.ndarray) -> np.ndarray:
    """ColBERT MaxSim ``sum_i max(0, max_j q_i . d_j)`` of one query ``[Kq, H]`` against ``[N, Kp, H]``."""
    sims = np.einsum("qh,nph->nqp", query_slots, doc_slots, optimize=True)
    return np.maximum(sims.max(axis=2), 0.0).sum(axis=1)
