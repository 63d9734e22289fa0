"""Fused attention for the ONNX graph: every attention call becomes one ``com.microsoft.MultiHeadAttention``.

A plain trace spells attention out as ~15 small nodes per layer (transposes, the score matmul, mask
add, softmax, the value matmul, GQA head repetition), which onnxruntime runs one by one: on a GPU
that made the exported encoder 1.43x slower than torch's SDPA. onnxruntime's own pattern matcher
does not recognise the graphs that transformers 5 produces, so the export emits the fused operator
itself. While the exporter traces, ``torch.nn.functional.scaled_dot_product_attention`` (where every
supported backbone's attention ends: transformers' ``sdpa`` implementation and the remote Dream and
LLaDA code alike) is routed through a small custom torch operator whose ONNX form is
``MultiHeadAttention`` (CPU and CUDA kernels; flash/memory-efficient kernels on CUDA).

The model's own attention mask is kept as the operator's additive ``attention_bias``
(``[B or 1, 1 or N, S, L]``): nothing is assumed about the mask, so the graph computes exactly what the
torch module computes. Grouped-query heads are repeated to the query head count, as SDPA does.
The custom operator's eager implementation is SDPA itself, so tracing gives the module's own numbers.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

OP_NAME = "diffret::multi_head_attention"
_sdpa = F.scaled_dot_product_attention  # the original, captured at import


@torch.library.custom_op(OP_NAME, mutates_args=())
def multi_head_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: Optional[torch.Tensor],
                         num_heads: int, scale: float, unidirectional: bool) -> torch.Tensor:
    """``[B, S, N*D]`` queries, ``[B, L, N*D]`` keys and values, additive bias -> ``[B, S, N*Dv]``."""
    batch, length_q, _ = query.shape
    length_k = key.shape[1]
    q = query.view(batch, length_q, num_heads, -1).transpose(1, 2)
    k = key.view(batch, length_k, num_heads, -1).transpose(1, 2)
    v = value.view(batch, length_k, num_heads, -1).transpose(1, 2)
    out = _sdpa(q, k, v, attn_mask=bias, scale=scale, is_causal=unidirectional and bias is None)
    return out.transpose(1, 2).reshape(batch, length_q, -1).contiguous()


@multi_head_attention.register_fake
def _(query, key, value, bias, num_heads, scale, unidirectional):
    return query.new_empty(query.shape[0], query.shape[1], value.shape[2])


def _symbolic(g, query, key, value, bias, num_heads, scale, unidirectional):
    from torch.onnx import symbolic_helper  # noqa: PLC0415

    def absent():
        node = g.op("prim::Constant")
        node.setType(torch._C.OptionalType.ofTensor())
        return node

    bias = absent() if symbolic_helper._is_none(bias) else bias
    out = g.op(
        "com.microsoft::MultiHeadAttention", query, key, value, absent(), absent(), bias,
        num_heads_i=symbolic_helper._get_const(num_heads, "i", "num_heads"),
        scale_f=symbolic_helper._get_const(scale, "f", "scale"),
        unidirectional_i=int(symbolic_helper._get_const(unidirectional, "b", "unidirectional")),
    )
    out.setType(query.type())  # [B, S, N*D], like the query (value heads have the query's width here)
    return out


_registered = False


def register_symbolic() -> None:
    """Tell the TorchScript ONNX exporter how to write the custom operator (idempotent)."""
    global _registered
    if not _registered:
        torch.onnx.register_custom_op_symbolic(OP_NAME, _symbolic, 1)
        _registered = True


def _as_bias(mask: torch.Tensor | None, dtype: torch.dtype, length_q: int, length_k: int) -> torch.Tensor | None:
    """SDPA's mask (boolean keep-mask or additive float) as MultiHeadAttention's ``[B|1, N|1, S, L]`` bias."""
    if mask is None:
        return None
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    if mask.dtype == torch.bool:
        mask = torch.zeros((), dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    elif mask.dtype != dtype:
        mask = mask.to(dtype)
    if mask.shape[2] == length_q and mask.shape[3] == length_k:  # how the model builds its mask: fixed per model
        return mask
    return mask.expand(mask.shape[0], mask.shape[1], length_q, length_k)


@dataclass
class AttentionRecord:
    """What happened during one traced pass: how many attention calls were fused, and any refusals."""

    fused_calls: int = 0
    notes: list[str] = field(default_factory=list)


def _fused_sdpa(record: AttentionRecord):
    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, **kwargs):
        if kwargs or query.dim() != 4 or key.dim() != 4:
            record.notes.append(f"left unfused: a call with {query.dim()}-d tensors or options {sorted(kwargs)}")
            return _sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                         enable_gqa=enable_gqa, **kwargs)
        batch, heads, length_q, head_dim = query.shape
        length_k = key.shape[2]
        if key.shape[1] != heads:  # grouped-query attention: repeat the key/value heads
            key = key.repeat_interleave(heads // key.shape[1], dim=1)
            value = value.repeat_interleave(heads // value.shape[1], dim=1)
        bias = _as_bias(attn_mask, query.dtype, length_q, length_k)
        scale = float(scale) if scale is not None else 1.0 / math.sqrt(head_dim)
        out = torch.ops.diffret.multi_head_attention(
            query.transpose(1, 2).reshape(batch, length_q, heads * head_dim),
            key.transpose(1, 2).reshape(batch, length_k, heads * head_dim),
            value.transpose(1, 2).reshape(batch, length_k, heads * value.shape[-1]),
            bias, heads, scale, bool(is_causal),
        )
        record.fused_calls += 1
        return out.view(batch, length_q, heads, -1).transpose(1, 2)

    return sdpa


@contextlib.contextmanager
def fused_attention(enabled: bool = True) -> Iterator[AttentionRecord]:
    """Within the block, SDPA calls trace as ``MultiHeadAttention``; the record says how many did."""
    record = AttentionRecord()
    if not enabled:
        yield record
        return
    F.scaled_dot_product_attention = _fused_sdpa(record)
    try:
        yield record
    finally:
        F.scaled_dot_product_attention = _sdpa
