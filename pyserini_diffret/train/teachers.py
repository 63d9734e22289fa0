"""Frozen teachers for the optional warm start of the slot read-out.

A freshly prompted backbone carries no meaning at its mask slots. Before (or alongside) the paper's
contrastive objective, the slots can be pulled toward what a good off-the-shelf encoder already computes
for the same text:

- ``DenseTeacher``: a sentence encoder's mean-pooled, L2-normalised final hidden states (e.g. the
  backbone's own original weights). Every slot vector is pulled toward it (``1 - cos``).
- ``SelfTeacher``: the student itself as it was before training (a frozen copy): the mean of its unit slot
  vectors for the same prompt. Adaptation uses it so that the model keeps what it knows.
- ``SparseTeacher``: a SPLADE-style masked LM (``max over tokens of log(1 + relu(logits))``), read on the
  student's content words only. It must share the student's vocabulary.

Both run without gradients, in eval mode, and cache their targets per text, so each text costs one
teacher pass however many epochs see it. The text is truncated to the same number of text tokens the
student reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.nn import functional as F


class _Teacher:
    def __init__(self, path: str | Path, device: torch.device, batch_size: int = 16) -> None:
        from pyserini_diffret.backbones.base import load_tokenizer  # noqa: PLC0415

        self.path = Path(path)
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(self.path)  # never runs or asks about the folder's own code
        self.cache: dict[tuple[str, int], torch.Tensor] = {}

    def _compute(self, texts: list[str], max_text_tokens: int) -> list[torch.Tensor]:
        raise NotImplementedError

    def targets(self, texts: Sequence[str], max_text_tokens: int) -> list[torch.Tensor]:
        # Sorted by (length, text), not set order: the batches, and so the float results, must not depend on
        # Python's hash seed, or a fixed training seed would not give the same model in another process.
        missing = sorted({t for t in texts if (t, max_text_tokens) not in self.cache}, key=lambda t: (len(t), t))
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            for text, value in zip(chunk, self._compute(chunk, max_text_tokens)):
                self.cache[(text, max_text_tokens)] = value
        return [self.cache[(t, max_text_tokens)] for t in texts]

    def _inputs(self, texts: list[str], max_text_tokens: int) -> dict[str, torch.Tensor]:
        special = self.tokenizer.num_special_tokens_to_add(pair=False)
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=max_text_tokens + special,
                               return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


class DenseTeacher(_Teacher):
    """Mean pooling over the text's tokens (special tokens included, as sentence-transformers pools)."""

    def __init__(self, path: str | Path, device: torch.device, batch_size: int = 16) -> None:
        from transformers import AutoModel  # noqa: PLC0415

        super().__init__(path, device, batch_size)
        self.model = AutoModel.from_pretrained(str(self.path), dtype=torch.float32, trust_remote_code=False).to(device).eval()
        self.hidden_size = int(self.model.config.hidden_size)

    @torch.no_grad()
    def _compute(self, texts: list[str], max_text_tokens: int) -> list[torch.Tensor]:
        inputs = self._inputs(texts, max_text_tokens)
        hidden = self.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"][:, :, None].to(hidden.dtype)
        pooled = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
        return list(pooled.cpu())

    def batch(self, texts: Sequence[str], max_text_tokens: int, device: torch.device, side: str = "document"
              ) -> torch.Tensor:
        return torch.stack(self.targets(texts, max_text_tokens)).to(device)


SELF = "self"  # the dense_teacher value that names the student's own starting point


class SelfTeacher:
    """A frozen copy of the student at the start of training: mean of its unit slot vectors, cached per text."""

    def __init__(self, adapter, builder, settings, tail_length: int, device: torch.device, batch_size: int = 16) -> None:
        import copy  # noqa: PLC0415

        self.path = SELF
        self.model = copy.deepcopy(adapter).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.builder, self.settings, self.tail, self.device = builder, settings, tail_length, device
        self.batch_size = batch_size
        self.hidden_size = adapter.hidden_size
        self.cache: dict[tuple[str, str], torch.Tensor] = {}

    @torch.no_grad()
    def _compute(self, texts: list[str], side: str) -> list[torch.Tensor]:
        k = self.settings.k_query if side == "query" else self.settings.k_doc
        batch = self.builder.build(texts, side, k)
        ids = torch.from_numpy(batch.input_ids).to(self.device)
        mask = torch.from_numpy(batch.attention_mask).to(self.device)
        slots, _ = self.model.slot_states(ids, mask, torch.arange(k, device=self.device), self.tail)
        return list(F.normalize(F.normalize(slots.float(), dim=-1).mean(dim=1), dim=-1).cpu())

    def batch(self, texts: Sequence[str], max_text_tokens: int, device: torch.device, side: str = "document"
              ) -> torch.Tensor:
        # The prompt builder already cuts texts to the side's length, so the length is not part of the key.
        missing = sorted({t for t in texts if (t, side) not in self.cache}, key=lambda t: (len(t), t))
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            for text, value in zip(chunk, self._compute(chunk, side)):
                self.cache[(text, side)] = value
        return torch.stack([self.cache[(t, side)] for t in texts]).to(device)


class SparseTeacher(_Teacher):
    """SPLADE max pooling of ``log(1 + relu(logits))`` over the text's tokens; cached sparse."""

    def __init__(self, path: str | Path, device: torch.device, batch_size: int = 8) -> None:
        from transformers import AutoModelForMaskedLM  # noqa: PLC0415

        super().__init__(path, device, batch_size)
        self.model = AutoModelForMaskedLM.from_pretrained(str(self.path), dtype=torch.float32,
                                                          trust_remote_code=False).to(device).eval()
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])

    @torch.no_grad()
    def _compute(self, texts: list[str], max_text_tokens: int) -> list[torch.Tensor]:
        inputs = self._inputs(texts, max_text_tokens)
        logits = self.model(**inputs).logits.float()
        weights = torch.log1p(torch.relu(logits)) * inputs["attention_mask"][:, :, None].to(logits.dtype)
        pooled = weights.amax(dim=1).cpu()
        return [row.to_sparse() for row in pooled]

    def batch(self, texts: Sequence[str], max_text_tokens: int, device: torch.device, side: str = "document"
              ) -> torch.Tensor:
        return torch.stack([t.to_dense() for t in self.targets(texts, max_text_tokens)]).to(device)


class Bm25Teacher:
    """Term weights from BM25 statistics of the training corpus, on the student's own vocabulary.

    A document's target for each of its content tokens is BM25's saturated term frequency
    ``tf (k1 + 1) / (tf + k1 (1 - b + b len / avglen))``; a query's target is the token's idf (scaled by
    ``query_scale``). Their dot product is BM25 over word pieces. Statistics (document frequencies, average
    length) come from ``corpus`` as the student reads it: its tokenizer, its content filter, truncated to
    ``max_document_length`` text tokens. No model and no judgements are involved.
    """

    def __init__(self, corpus: Sequence[str], tokenizer, content_filter, vocab_size: int, max_document_length: int,
                 k1: float = 0.9, b: float = 0.4, query_scale: float = 0.25) -> None:
        self.tokenizer = tokenizer
        self.content = content_filter
        self.vocab_size = vocab_size
        self.k1, self.b, self.query_scale = k1, b, query_scale
        self.path = "bm25"
        counts = torch.zeros(vocab_size, dtype=torch.float64)
        lengths = []
        for start in range(0, len(corpus), 256):
            for ids in self._content_ids(list(corpus[start:start + 256]), max_document_length):
                lengths.append(len(ids))
                if ids:
                    counts[torch.tensor(sorted(set(ids)))] += 1
        n = max(1, len(corpus))
        self.idf = torch.log(1 + (n - counts + 0.5) / (counts + 0.5)).to(torch.float32)
        self.average_length = max(1.0, sum(lengths) / max(1, len(lengths)))

    def _content_ids(self, texts: list[str], max_text_tokens: int) -> list[list[int]]:
        encoded = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_text_tokens,
                                 split_special_tokens=True)["input_ids"]
        out = []
        for text, ids in zip(texts, encoded):
            allowed = set(self.content.token_ids(text).tolist())
            out.append([i for i in ids if i in allowed])
        return out

    def batch(self, texts: Sequence[str], max_text_tokens: int, device: torch.device, side: str = "document"
              ) -> torch.Tensor:
        target = torch.zeros(len(texts), self.vocab_size)
        for row, ids in enumerate(self._content_ids(list(texts), max_text_tokens)):
            if not ids:
                continue
            index, tf = torch.unique(torch.tensor(ids), return_counts=True)
            if side == "query":
                target[row, index] = self.idf[index] * self.query_scale
            else:
                tf = tf.to(torch.float32)
                norm = self.k1 * (1 - self.b + self.b * len(ids) / self.average_length)
                target[row, index] = tf * (self.k1 + 1) / (tf + norm)
        return target.to(device)


def check_vocabularies(student_tokenizer, teacher) -> None:
    if student_tokenizer.get_vocab() != teacher.tokenizer.get_vocab():
        raise ValueError(f"{teacher.path}: the sparse teacher's vocabulary differs from the student's; "
                         "term weights cannot be distilled across vocabularies")
