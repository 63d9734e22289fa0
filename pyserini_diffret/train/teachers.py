"""Frozen teachers for the optional warm start of the slot read-out.

A freshly prompted backbone carries no meaning at its mask slots. Before (or alongside) the paper's
contrastive objective, the slots can be pulled toward what a good off-the-shelf encoder already computes
for the same text:

- ``DenseTeacher``: a sentence encoder's mean-pooled, L2-normalised final hidden states (e.g. the
  backbone's own original weights). Every slot vector is pulled toward it (``1 - cos``).
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
        from transformers import AutoTokenizer  # noqa: PLC0415

        self.path = Path(path)
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.cache: dict[tuple[str, int], torch.Tensor] = {}

    def _compute(self, texts: list[str], max_text_tokens: int) -> list[torch.Tensor]:
        raise NotImplementedError

    def targets(self, texts: Sequence[str], max_text_tokens: int) -> list[torch.Tensor]:
        missing = sorted({t for t in texts if (t, max_text_tokens) not in self.cache}, key=len)
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
        self.model = AutoModel.from_pretrained(str(self.path), dtype=torch.float32).to(device).eval()
        self.hidden_size = int(self.model.config.hidden_size)

    @torch.no_grad()
    def _compute(self, texts: list[str], max_text_tokens: int) -> list[torch.Tensor]:
        inputs = self._inputs(texts, max_text_tokens)
        hidden = self.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"][:, :, None].to(hidden.dtype)
        pooled = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
        return list(pooled.cpu())

    def batch(self, texts: Sequence[str], max_text_tokens: int, device: torch.device) -> torch.Tensor:
        return torch.stack(self.targets(texts, max_text_tokens)).to(device)


class SparseTeacher(_Teacher):
    """SPLADE max pooling of ``log(1 + relu(logits))`` over the text's tokens; cached sparse."""

    def __init__(self, path: str | Path, device: torch.device, batch_size: int = 8) -> None:
        from transformers import AutoModelForMaskedLM  # noqa: PLC0415

        super().__init__(path, device, batch_size)
        self.model = AutoModelForMaskedLM.from_pretrained(str(self.path), dtype=torch.float32).to(device).eval()
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])

    @torch.no_grad()
    def _compute(self, texts: list[str], max_text_tokens: int) -> list[torch.Tensor]:
        inputs = self._inputs(texts, max_text_tokens)
        logits = self.model(**inputs).logits.float()
        weights = torch.log1p(torch.relu(logits)) * inputs["attention_mask"][:, :, None].to(logits.dtype)
        pooled = weights.amax(dim=1).cpu()
        return [row.to_sparse() for row in pooled]

    def batch(self, texts: Sequence[str], max_text_tokens: int, device: torch.device) -> torch.Tensor:
        return torch.stack([t.to_dense() for t in self.targets(texts, max_text_tokens)]).to(device)


def check_vocabularies(student_tokenizer, teacher: _Teacher) -> None:
    if student_tokenizer.get_vocab() != teacher.tokenizer.get_vocab():
        raise ValueError(f"{teacher.path}: the sparse teacher's vocabulary differs from the student's; "
                         "term weights cannot be distilled across vocabularies")
