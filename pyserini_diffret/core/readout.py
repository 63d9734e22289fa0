"""From slot states to the two representations, in torch: written once, run by the torch runtime
(``runtimes.torch_runtime.RetrieverModule``) and exported into the ONNX graph.

Per slot (DESIGN 1.2-1.3): the L2-normalised hidden state, and ``relu(logit)`` at the text's own words only
(the content ids). The LM head is read at those ids alone (``Backbone.content_logits``): a score outside the
content mask would be zeroed anyway, and ``log(1 + 0)`` adds nothing to the max over slots, so the top-k,
``log1p`` and max-pool that follow (``representations.pool_content_scores``, on the host, shared by every
runtime) give what the reference's vocabulary-wide read-out gives, for ``K x A`` instead of ``K x V`` logits
(A: the text's distinct content ids, tens; V: the vocabulary, 30,522 to 152,000). Zero-shot instruction
models also zero every slot from the first one whose argmax over the whole vocabulary is a special token
(unless that is the very first slot, as in the reference): only they pay for the full LM head.
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


def content_scores(content_logits: torch.Tensor, valid: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``[B, K, A]`` float32 ``relu(logit)`` at the content ids; 0 at padding ids and in dropped slots."""
    allowed = valid[:, None, :] & keep[:, :, None]
    return torch.where(allowed, torch.relu(content_logits.float()), 0.0)
