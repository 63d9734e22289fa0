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

# The MLM head after the encoder, per architecture, split into what comes before its vocabulary projection
# (run on the slots alone) and the projection itself (read at the text's own words at search time).
_HEADS: dict[str, tuple[Callable[[nn.Module, torch.Tensor], torch.Tensor], Callable[[nn.Module], nn.Module]]] = {
    "BertForMaskedLM": (lambda m, h: m.cls.predictions.transform(h), lambda m: m.cls.predictions.decoder),
    "RobertaForMaskedLM": (lambda m, h: _roberta_transform(m.lm_head, h), lambda m: m.lm_head.decoder),
    "XLMRobertaForMaskedLM": (lambda m, h: _roberta_transform(m.lm_head, h), lambda m: m.lm_head.decoder),
    "CamembertForMaskedLM": (lambda m, h: _roberta_transform(m.lm_head, h), lambda m: m.lm_head.decoder),
    "ModernBertForMaskedLM": (lambda m, h: m.head(h), lambda m: m.decoder),
    "DistilBertForMaskedLM": (lambda m, h: m.vocab_layer_norm(m.activation(m.vocab_transform(h))),
                              lambda m: m.vocab_projector),
    "ElectraForMaskedLM": (lambda m, h: m.generator_predictions(h), lambda m: m.generator_lm_head),
}


def _roberta_transform(head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """``RobertaLMHead.forward`` up to its decoder (the same activation function it calls)."""
    from transformers.activations import gelu  # noqa: PLC0415

    return head.layer_norm(gelu(head.dense(hidden)))


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

    def head_transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return _HEADS[type(self.model).__name__][0](self.model, hidden)

    @property
    def output_projection(self) -> nn.Module:
        return _HEADS[type(self.model).__name__][1](self.model)
