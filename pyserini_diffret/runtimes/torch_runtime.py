"""The torch reference runtime: runs ``RetrieverModule`` (a backbone adapter + the shared read-out)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pyserini_diffret.backbones.base import Backbone
from pyserini_diffret.core.devices import canonical_device
from pyserini_diffret.core.prompts import EncodedBatch
from pyserini_diffret.core.readout import content_scores, kept_slots


_STANDARD_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def stop_token_ids(tokenizer) -> set[int]:
    """The special tokens that end a zero-shot slot sequence, as the reference's ``all_special_ids`` under its
    transformers 4.54: the standard special tokens and the additional ones. transformers 5 also counts a
    tokenizer config's model-specific tokens (LLaDA's ``gmask_token``), which 4.54 does not."""
    tokens = [getattr(tokenizer, name, None) for name in _STANDARD_SPECIAL_TOKENS]
    extra = getattr(tokenizer, "extra_special_tokens", None) or getattr(tokenizer, "additional_special_tokens", None)
    tokens += list(extra.values() if isinstance(extra, dict) else extra or [])
    ids = tokenizer.convert_tokens_to_ids([str(t) for t in tokens if t])
    return {int(i) for i in ids if i is not None and i >= 0}


class RetrieverModule(nn.Module):
    """Backbone + read-out as one module: the unit the torch runtime runs and the ONNX export traces.

    Inputs: ``input_ids``/``attention_mask`` (left-padded), ``slot_offsets`` (``arange(K)``; its length is
    K), ``content_ids`` ``[B, A]`` (each text's allowed vocabulary ids, then ``content.PAD_ID``) and
    ``stop_truncation`` (0-d bool, read only with ``stop_rule``). Outputs: ``slot_vectors`` ``[B, K, H]``
    (unit length, zero where truncated) and ``content_scores`` ``[B, K, A]`` (``readout.content_scores``).

    ``stop_rule``: whether the zero-shot stop-token truncation can apply (instruction models read without
    fine-tuning). It needs the LM head over the whole vocabulary; without it the module never computes it.
    """

    def __init__(self, backbone: Backbone, tail_length: int, stop_rule: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.tail_length = tail_length
        self.stop_rule = bool(stop_rule)
        special = torch.zeros(backbone.vocab_size, dtype=torch.bool)
        stop_ids = stop_token_ids(backbone.tokenizer)
        if backbone.layout.mask_id is not None:
            stop_ids.discard(backbone.layout.mask_id)
        special[[i for i in stop_ids if i < backbone.vocab_size]] = True
        self.register_buffer("stop_ids", special, persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, slot_offsets: torch.Tensor,
                content_ids: torch.Tensor, stop_truncation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, logit_hidden, produced = self.backbone.slot_hidden_states(input_ids, attention_mask, slot_offsets,
                                                                          self.tail_length)
        if self.stop_rule:
            keep = kept_slots(self.backbone.lm_head(logit_hidden), self.stop_ids, stop_truncation)
        else:
            keep = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        if produced is not None:  # the autoregressive baseline: rows that stopped early
            keep = keep & produced
        vectors = F.normalize(hidden.float(), dim=-1) * keep[:, :, None].to(torch.float32)
        valid = content_ids >= 0
        logits = self.backbone.content_logits(logit_hidden, torch.where(valid, content_ids, 0))
        return vectors, content_scores(logits, valid, keep)


class TorchRuntime:
    """``run(batch, content_ids, stop_truncation) -> (slot_vectors, content_scores)`` with torch.

    ``stop_rule``: build the stop-token truncation in (the model's ``stop_truncation`` setting).
    """

    name = "torch"

    def __init__(self, backbone: Backbone, stop_rule: bool = False, device: str = "cpu") -> None:
        self.device = torch.device(self.check_device(device))
        tail_length = len(backbone.layout.tail_ids)
        self.module = RetrieverModule(backbone, tail_length=tail_length, stop_rule=stop_rule).to(self.device).eval()

    @staticmethod
    def check_device(device: str) -> str:
        """The canonical device name; a clear error when torch cannot use it."""
        device = canonical_device(device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for, but torch sees no CUDA device; use device='cpu'")
        return device

    @property
    def backbone(self) -> Backbone:
        return self.module.backbone

    @torch.inference_mode()
    def run(self, batch: EncodedBatch, content_ids: np.ndarray, stop_truncation: bool) -> tuple[np.ndarray, np.ndarray]:
        if stop_truncation and not self.module.stop_rule:
            raise ValueError("stop_truncation was asked for, but this model was loaded without the stop-token rule; "
                             "load it with stop_truncation=True")
        to = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        vectors, scores = self.module(
            to(batch.input_ids),
            to(batch.attention_mask),
            torch.arange(batch.num_slots, device=self.device),
            to(content_ids),
            torch.tensor(stop_truncation, device=self.device),
        )
        return vectors.cpu().numpy(), scores.cpu().numpy()
