"""From slot states to the two representations, in torch: written once, run by the torch runtime
(``runtimes.torch_runtime.RetrieverModule``) and exported into the ONNX graph.

Per slot (DESIGN 1.2-1.3): L2-normalised hidden state; term weights ``log(1 + relu(logit))`` restricted to
the text's own words (the content mask), top-k per slot, then max-pooled over the K slots. Zero-shot
instruction models also zero every slot from the first one whose argmax is a special token (unless that
is the very first slot, as in the reference). Quantisation to integers happens on the host
(``representations``), identically for every runtime.
"""
from __future__ import annotations

import torch


def kept_slots(slot_logits: torch.Tensor, stop_ids: torch.Tensor, stop_truncation: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` bool: which slots survive the zero-shot stop-token truncation."""
    is_stop = stop_ids[slot_logits.argmax(-1)]
    stopped = torch.cumsum(is_stop.to(torch.int64), dim=1) > 0
    # A stop token in the very first slot truncates nothing (the reference falls back to all slots).
    keep = ~stopped | is_stop[:, :1]
    return keep | ~stop_truncation


def slot_term_weights(slot_logits: torch.Tensor, content_mask: torch.Tensor, terms_per_slot: int,
                      keep: torch.Tensor) -> torch.Tensor:
    """``[B, V]`` max over kept slots of the per-slot top-k content-filtered ``log(1 + relu(logit))``.

    ``log1p`` is monotone, so it is applied to the k kept values only, after ``topk``.
    """
    allowed = content_mask[:, None, :] & keep[:, :, None]
    scores = torch.where(allowed, torch.relu(slot_logits.float()), 0.0)
    batch, k, vocab = scores.shape
    values, index = torch.topk(scores, min(terms_per_slot, vocab), dim=-1)
    pooled = torch.zeros(batch, vocab, dtype=values.dtype, device=values.device)
    return pooled.scatter_reduce(1, index.reshape(batch, -1), torch.log1p(values).reshape(batch, -1), reduce="amax")
