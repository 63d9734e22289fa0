"""Decoder-shaped backbones: Dream and LLaDA (masked diffusion LMs with bidirectional attention), and
the autoregressive PromptReps baseline.

Real Dream/LLaDA checkpoints ship their modelling code in the model folder (``auto_map`` in config.json).
By default they load natively, as the library's Qwen2/Llama decoders with full bidirectional attention
(``native.py``: config and weight names mapped, no folder code run); ``trust_remote_code=True`` loads the
folder's own code instead. A folder with a stock Qwen2/Llama architecture is run with full bidirectional
attention too (``config.is_causal = False``): that is how the tests build small random stand-ins with the
real mask tokens and chat templates.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pyserini_diffret.backbones.base import Backbone, load_tokenizer, read_hf_config, token_id
from pyserini_diffret.core.prompts import SlotLayout


class _Passthrough(nn.Module):
    """Stands in for an LM head that the model would otherwise apply inside its own forward.

    The real head is kept on it (outside ``_modules``) so that another adapter built on the same model finds
    it again.
    """

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.__dict__["replaced_head"] = head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


def _load_decoder(path: Path, dtype: torch.dtype, trust_remote_code: bool, bidirectional: bool,
                  remote_class: str) -> nn.Module:
    import transformers  # noqa: PLC0415

    from pyserini_diffret.backbones import native  # noqa: PLC0415

    hf_config = read_hf_config(path)
    if trust_remote_code and "auto_map" in hf_config:
        loader = getattr(transformers, remote_class)
        return loader.from_pretrained(str(path), dtype=dtype, trust_remote_code=True)
    if native.native_model_type(hf_config) is not None:
        return native.load_native(path, dtype=dtype, bidirectional=bidirectional, hf_config=hf_config)
    model_type = hf_config.get("model_type")
    if "auto_map" in hf_config or model_type not in transformers.CONFIG_MAPPING:
        where = "its code ships in the folder (auto_map in config.json)" if "auto_map" in hf_config else \
            "transformers has no such model type"
        raise ValueError(
            f"{path}: model_type {model_type!r} cannot be loaded natively ({where}); native loaders exist for "
            f"model_type {native.supported_model_types()} and for the model types transformers knows "
            "(e.g. 'qwen2', 'llama'); load it with trust_remote_code=True (CLI: --trust-remote-code) if you trust "
            "its code"
        )
    config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    if bidirectional:
        config.is_causal = False
    return transformers.AutoModelForCausalLM.from_pretrained(str(path), config=config, dtype=dtype,
                                                             trust_remote_code=False)


class DecoderBackbone(Backbone):
    """Shared by Dream, LLaDA and the AR baseline: chat-template prompts, body + LM head."""

    remote_class = "AutoModelForCausalLM"
    end_of_turn_token: str | None = None
    bidirectional = True

    @classmethod
    def load(cls, path: Path, *, mask_token: str | None, dtype: torch.dtype, trust_remote_code: bool,
             logit_shift: int = 0) -> "DecoderBackbone":
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        model = _load_decoder(path, dtype, trust_remote_code, cls.bidirectional, cls.remote_class)
        return cls.from_model(model, tokenizer, mask_token=mask_token, path=path, logit_shift=logit_shift)

    @classmethod
    def from_model(cls, model: nn.Module, tokenizer, *, mask_token: str | None = None, path: Path | str = "model",
                   logit_shift: int = 0) -> "DecoderBackbone":
        path = Path(str(path))
        if getattr(tokenizer, "pad_token_id", None) is None:
            tokenizer.pad_token = tokenizer.eos_token
        mask_id = None
        if cls.default_mask_token is not None:
            mask_id = token_id(tokenizer, mask_token or cls.default_mask_token, "mask", path)
        layout = SlotLayout(
            chat_template=True,
            mask_id=mask_id,
            tail_ids=cls.tail_ids(tokenizer, path) if mask_id is not None else (),
            pad_id=int(tokenizer.pad_token_id),
        )
        return cls(model, tokenizer, layout, logit_shift=logit_shift)

    @classmethod
    def tail_ids(cls, tokenizer, path: Path) -> tuple[int, ...]:
        """Closing quote, end of turn, EOS; EOS twice when it is the end-of-turn token itself."""
        quote = tokenizer.encode('"', add_special_tokens=False)
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"{path}: the tokenizer has no EOS token")
        end_of_turn = token_id(tokenizer, cls.end_of_turn_token, "end-of-turn", path)
        return (*quote, end_of_turn if end_of_turn != eos else eos, eos)

    def _prepare(self) -> None:
        """Split the model into a body (ids -> final normed hidden states) and its LM head.

        Every parameter is registered exactly once, so ``.to()``, ``.parameters()`` and tracing see them all.
        Stock decoders (and the native Dream/LLaDA loads): the body is ``model.model`` and the head stays
        ``model``'s own module (``model.lm_head``). LLaDA's remote code computes logits inside its base model:
        the whole model runs as the body with its head swapped for a pass-through, so that its "logits" are
        the final hidden states, and the real head is registered on the adapter (``_head``).
        """
        model = self.model
        head = model.get_output_embeddings()
        if isinstance(head, _Passthrough):  # a second adapter on a model that an earlier one split
            head = head.replaced_head
        inner = getattr(model, "model", None)
        if inner is None or getattr(model.config, "model_type", "") == "llada":
            if getattr(model.config, "weight_tying", False):
                # The head is the input embedding there: swapping it would also remove the embeddings.
                raise NotImplementedError("LLaDA variants with tied input/output embeddings are not supported")
            model.set_output_embeddings(_Passthrough(head))
            self.__dict__["_body"] = model
            self._head = head  # registered here: it left model's module tree
        else:
            self.__dict__["_body"] = inner
            self.__dict__["_head"] = head  # already registered inside model

    @property
    def body(self) -> nn.Module:
        return self._body

    @property
    def vocab_size(self) -> int:
        return int(self._head.weight.shape[0])

    @property
    def max_positions(self) -> int | None:
        return None  # rotary positions: no table to run past (the configured maximum is not a hard limit)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.body(**self.body_kwargs(input_ids, attention_mask))
        if hasattr(out, "last_hidden_state"):
            return out.last_hidden_state
        return out.logits if hasattr(out, "logits") else out[0]

    @property
    def output_projection(self) -> nn.Module:
        return self._head


class DreamBackbone(DecoderBackbone):
    """Dream-v0 (Qwen2-based). Mask ``<|mask|>`` (151666 in the real tokenizer), tail ``" <|im_end|> EOS``.

    The reference passes a 4D additive mask that hides padded keys only; so do we (padded query rows are
    left free, which avoids the NaN rows a fully masked row produces).
    """

    name = "dream"
    default_mask_token = "<|mask|>"
    end_of_turn_token = "<|im_end|>"
    remote_class = "AutoModel"

    def body_kwargs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        kwargs = super().body_kwargs(input_ids, attention_mask)
        dtype = next(self.model.parameters()).dtype
        blocked = (attention_mask == 0)[:, None, None, :]
        kwargs["attention_mask"] = torch.zeros(blocked.shape, dtype=dtype, device=input_ids.device).masked_fill(
            blocked, torch.finfo(dtype).min
        ).expand(-1, 1, input_ids.shape[1], -1)
        return kwargs


class LLaDABackbone(DecoderBackbone):
    """LLaDA-8B (Llama-like). Mask ``<|mdm_mask|>`` (126336), tail ``" <|eot_id|> EOS``; 2D padding mask."""

    name = "llada"
    default_mask_token = "<|mdm_mask|>"
    end_of_turn_token = "<|eot_id|>"
