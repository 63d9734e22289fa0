"""The paper's training objective (DESIGN 1.5) and the optional warm-start distillation terms.

- dense: cross-entropy over ``MaxSim(q, p) / K_q / temperature`` with unit slot vectors (no clamp at 0:
  the reference clamps only at search time);
- sparse: cross-entropy over dot products of content-filtered ``log(1 + relu(logit))`` vectors max-pooled
  over the slots (no temperature, no top-k);
- candidates: every passage of the batch (in-batch negatives) plus each query's hard negatives. Passages
  that are known positives of a query other than its target are masked out of that query's candidates.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def maxsim_scores(query_slots: torch.Tensor, passage_slots: torch.Tensor) -> torch.Tensor:
    """``[Q, P]`` sum over query slots of the max over passage slots of the dot products (unit vectors)."""
    sims = torch.einsum("qkh,pjh->qpkj", query_slots, passage_slots)
    return sims.amax(dim=-1).sum(dim=-1)


def term_weights(slot_logits: torch.Tensor, content_mask: torch.Tensor) -> torch.Tensor:
    """``[B, V]`` max over slots of ``log(1 + relu(logit))`` on the text's own words (training: no top-k).

    ``log(1 + relu(.))`` is non-decreasing, so the max over slots is taken on the logits first: the same
    values and gradients, without keeping ``[B, K, V]`` intermediates for the backward pass.
    """
    pooled = slot_logits.amax(dim=1).float()
    return torch.log1p(torch.relu(pooled)) * content_mask.to(pooled.dtype)


def contrastive(scores: torch.Tensor, targets: torch.Tensor, blocked: torch.Tensor | None) -> torch.Tensor:
    """InfoNCE: cross-entropy of each query's target passage among all passages of the batch."""
    if blocked is not None:
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
    return F.cross_entropy(scores, targets)


def dense_loss(query_slots: torch.Tensor, passage_slots: torch.Tensor, targets: torch.Tensor,
               blocked: torch.Tensor | None, temperature: float) -> torch.Tensor:
    q = F.normalize(query_slots.float(), dim=-1)
    p = F.normalize(passage_slots.float(), dim=-1)
    scores = maxsim_scores(q, p) / q.shape[1] / temperature
    return contrastive(scores, targets, blocked)


def sparse_loss(query_weights: torch.Tensor, passage_weights: torch.Tensor, targets: torch.Tensor,
                blocked: torch.Tensor | None) -> torch.Tensor:
    return contrastive(query_weights @ passage_weights.T, targets, blocked)


def slot_distillation(slots: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over texts and slots of ``1 - cos(slot, target)``: every slot starts at the teacher's vector."""
    cos = F.cosine_similarity(slots.float(), target[:, None, :].to(torch.float32), dim=-1)
    return (1.0 - cos).mean()


def weight_distillation(weights: torch.Tensor, target: torch.Tensor, content_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between term weights on each text's own words (a sparse teacher's weights)."""
    mask = content_mask.to(weights.dtype)
    error = ((weights - target.to(weights.dtype) * mask) ** 2 * mask).sum(dim=1)
    return (error / mask.sum(dim=1).clamp(min=1)).mean()
