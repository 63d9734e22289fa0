"""Masked language models (BERT, RoBERTa, ModernBERT, DistilBERT, ELECTRA...): the one-step special case
of a masked diffusion LM.

Prompt layout (no chat template; the paper's words, no system turn)::

    [CLS] Query: " <text> ". Use a few words to represent the query in a retrieval task.
    Make sure your words are in lowercase. The words are: " [MASK] x K " [SEP]

The dense vector is the encoder's last hidden state at a slot; the logits come from the model's own MLM
head applied to the slots only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pyserini_diffret.backbones.base import Backbone, load_tokenizer, token_id
from pyserini_diffret.core.prompts import SlotLayout

# The MLM head after the encoder, per architecture, so that it can run on the slots alone.
_HEADS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "BertForMaskedLM": lambda m, h: m.cls(h),
    "RobertaForMaskedLM": lambda m, h: m.lm_head(h),
    "XLMRobertaForMaskedLM": lambda m, h: m.lm_head(h),
    "CamembertForMaskedLM": lambda m, h: m.lm_head(h),
    "ModernBertForMaskedLM": lambda m, h: m.decoder(m.head(h)),
    "DistilBertForMaskedLM": lambda m, h: m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(h)))),
    "ElectraForMaskedLM": lambda m, h: m.generator_lm_head(m.generator_predictions(h)),
}


class MaskedLMBackbone(Backbone):
    name = "mlm"

    @classmethod
    def load(cls, path: Path, *, mask_token: str | None, dtype: torch.dtype, trust_remote_code: bool,
             logit_shift: int = 0) -> "MaskedLMBackbone":
        from transformers import AutoModelForMaskedLM  # noqa: PLC0415

        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        model = AutoModelForMaskedLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code)
        return cls.from_model(model, tokenizer, mask_token=mask_token, path=path, logit_shift=logit_shift)

    @classmethod
    def from_model(cls, model: nn.Module, tokenizer, *, mask_token: str | None = None, path: Path | str = "model",
                   logit_shift: int = 0) -> "MaskedLMBackbone":
        architecture = type(model).__name__
        if architecture not in _HEADS:
            raise ValueError(
                f"{path}: masked-LM architecture {architecture} is not supported "
                f"(supported: {', '.join(sorted(_HEADS))})"
            )
        mask_token = mask_token or tokenizer.mask_token
        if mask_token is None:
            raise ValueError(f"{path}: the tokenizer has no mask token")
        mask_id = token_id(tokenizer, mask_token, "mask", Path(str(path)))
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        quote = tokenizer.encode('"', add_special_tokens=False)
        layout = SlotLayout(
            chat_template=False,
            mask_id=mask_id,
            tail_ids=tuple(quote) + ((end,) if end is not None else ()),
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            start_ids=(start,) if start is not None else (),
        )
        return cls(model, tokenizer, layout, logit_shift=logit_shift)

    @property
    def body(self) -> nn.Module:
        return self.model.base_model

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return _HEADS[type(self.model).__name__](self.model, hidden)
