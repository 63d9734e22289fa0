"""From slot states to the two representations, in torch: written once, run by the torch runtime and
exported into the ONNX graph.

Per slot (DESIGN 1.2-1.3): L2-normalised hidden state; term weights ``log(1 + relu(logit))`` restricted to
the text's own words (the content mask), top-k per slot, then max-pooled over the K slots. Zero-shot
instruction models also zero every slot from the first one whose argmax is a special token (unless that
is the very first slot, as in the reference). Quantisation to integers happens on the host
(``representations``), identically for every runtime.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pyserini_diffret.backbones.base import Backbone


def kept_slots(slot_logits: torch.Tensor, stop_ids: torch.Tensor, stop_truncation: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` bool: which slots survive the zero-shot stop-token truncation."""
    is_stop = stop_ids[slot_logits.argmax(-1)]
    stopped = torch.cumsum(is_stop.to(torch.int64), dim=1) > 0
    # A stop token in the very first slot truncates nothing (the reference falls back to all slots).
    keep = ~stopped | is_stop[:, :1]
    return keep | ~stop_truncation


def slot_term_weights(slot_logits: torch.Tensor, content_mask: torch.Tensor, top_k: int,
                      keep: torch.Tensor) -> torch.Tensor:
    """``[B, V]`` max over kept slots of the per-slot top-k content-filtered ``log(1 + relu(logit))``.

    ``log1p`` is monotone, so it is applied to the k kept values only, after ``topk``.
    """
    allowed = content_mask[:, None, :] & keep[:, :, None]
    scores = torch.where(allowed, torch.relu(slot_logits.float()), 0.0)
    batch, k, vocab = scores.shape
    values, index = torch.topk(scores, min(top_k, vocab), dim=-1)
    pooled = torch.zeros(batch, vocab, dtype=values.dtype, device=values.device)
    return pooled.scatter_reduce(1, index.reshape(batch, -1), torch.log1p(values).reshape(batch, -1), reduce="amax")


class RetrieverModule(nn.Module):
    """Backbone + read-out as one module: the unit the torch runtime runs and the ONNX export traces.

    Inputs: ``input_ids``/``attention_mask`` (left-padded), ``slot_offsets`` (``arange(K)``; its length is
    K), ``content_mask`` ``[B, V]`` and ``stop_truncation`` (0-d bool). Outputs: ``slot_vectors``
    ``[B, K, H]`` (unit length, zero where truncated) and ``term_weights`` ``[B, V]``.
    """

    def __init__(self, backbone: Backbone, top_k: int, tail_length: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.top_k = top_k
        self.tail_length = tail_length
        special = torch.zeros(backbone.vocab_size, dtype=torch.bool)
        stop_ids = set(backbone.tokenizer.all_special_ids)
        if backbone.layout.mask_id is not None:
            stop_ids.discard(backbone.layout.mask_id)
        special[[i for i in stop_ids if i < backbone.vocab_size]] = True
        self.register_buffer("stop_ids", special, persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, slot_offsets: torch.Tensor,
                content_mask: torch.Tensor, stop_truncation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, logits = self.backbone.slot_states(input_ids, attention_mask, slot_offsets, self.tail_length)
        keep = kept_slots(logits, self.stop_ids, stop_truncation)
        vectors = F.normalize(hidden.float(), dim=-1) * keep[:, :, None].to(torch.float32)
        return vectors, slot_term_weights(logits, content_mask, self.top_k, keep)
