"""A backbone adapter: the one thing that differs between model families.

It loads a Hugging Face model and tokenizer, says how the prompt is laid out around the text
(``SlotLayout``), and turns a left-padded batch into the final hidden states and LM-head logits at the
K slot positions. The LM head runs on the K slots only: over every position it costs 6-8% more on a 7B
model and doubles the cost of a small encoder whose vocabulary projection is as large as its body. At
search time it is read at the text's own words only (``content_logits``); training and the zero-shot
stop-token rule use the whole vocabulary (``slot_states``). Everything before (prompts) and after
(read-out) is shared.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from pyserini_diffret.core.config import RetrieverConfig
from pyserini_diffret.core.prompts import SlotLayout
from pyserini_diffret.core.spec import ModelSpec

_PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def read_hf_config(path: Path) -> dict[str, Any]:
    import json  # noqa: PLC0415

    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: no config.json; not a Hugging Face model folder")
    return json.loads(config_file.read_text(encoding="utf-8"))


# Tokenizer classes that real folders ship as remote code but that are the library's own class under another
# name. Dream's ``tokenization_dream.DreamTokenizer`` is Qwen2's byte-level BPE tokenizer (same vocab.json and
# merges.txt files, the same pre-tokenization pattern and NFC normalisation, unknown/EOS/pad
# ``<|endoftext|>``), so it loads as ``transformers.Qwen2Tokenizer`` without running the folder's code.
EQUIVALENT_TOKENIZERS: dict[str, str] = {"DreamTokenizer": "Qwen2Tokenizer"}

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "vocab.json")


def _json_or_empty(file: Path) -> dict[str, Any]:
    import json  # noqa: PLC0415

    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _remote_tokenizer(path: Path) -> tuple[str | None, str | None]:
    """``(class reference in auto_map, tokenizer_class)`` from tokenizer_config.json; (None, ...) without auto_map."""
    config = _json_or_empty(path / "tokenizer_config.json")
    auto_map = config.get("auto_map")
    refs = auto_map if isinstance(auto_map, (list, tuple)) else (auto_map or {}).get("AutoTokenizer")
    refs = [refs] if isinstance(refs, str) else [r for r in (refs or []) if r]
    return (refs[0] if refs else None), config.get("tokenizer_class")


def _library_tokenizer(name: str | None) -> bool:
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name  # noqa: PLC0415

    if not name:
        return False
    found = tokenizer_class_from_name(name) or tokenizer_class_from_name(name.removesuffix("Fast"))
    return found is not None and found.__module__.startswith("transformers.")


def remote_code_error(path: Path, what: str) -> ValueError:
    return ValueError(
        f"{path}: {what} ships as code in the model folder; it is not run unless you trust it: load with "
        "trust_remote_code=True (CLI: --trust-remote-code)"
    )


def load_tokenizer(path: Path, *, trust_remote_code: bool = False):
    """The folder's tokenizer. Never asks on stdin: without ``trust_remote_code`` a tokenizer whose code ships
    in the folder is refused with an error naming the folder and the option (no folder code runs), except for
    the known equivalents of library tokenizers (``EQUIVALENT_TOKENIZERS``)."""
    import transformers  # noqa: PLC0415

    path = Path(path)
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer.json, tokenizer_config.json, vocab.txt...)")
    trust_remote_code = bool(trust_remote_code)
    reference, tokenizer_class = _remote_tokenizer(path)
    if reference is not None and not trust_remote_code:
        equivalent = EQUIVALENT_TOKENIZERS.get(str(tokenizer_class).removesuffix("Fast"))
        if equivalent is not None:
            tokenizer = getattr(transformers, equivalent).from_pretrained(str(path), trust_remote_code=False)
            # Saved again (an export), it is the library's class: no reference to code that is not there.
            tokenizer.init_kwargs.pop("auto_map", None)
            return tokenizer
        if not _library_tokenizer(tokenizer_class):
            raise remote_code_error(path, f"the tokenizer ({reference}, auto_map in tokenizer_config.json)")
        # tokenizer_class names a library class: transformers uses it and leaves the folder's code alone.
    kwargs = {}
    if not trust_remote_code and "auto_map" in _json_or_empty(path / "config.json"):
        # The model's config is remote code (Dream, LLaDA): the tokenizer does not need it, and reading it
        # without its code only makes transformers warn.
        kwargs["config"] = transformers.PreTrainedConfig()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as error:
        if not trust_remote_code and "trust_remote_code" in str(error):
            raise remote_code_error(path, "the tokenizer") from error
        raise


def token_id(tokenizer, token: str, what: str, path: Path) -> int:
    """Id of a special token that must exist, with a clear error otherwise."""
    ids = tokenizer.convert_tokens_to_ids([token])
    if not ids or ids[0] is None or (ids[0] == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ValueError(f"{path}: the tokenizer has no {what} token {token!r}")
    return int(ids[0])


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that ignore left padding, so a text gets the same positions alone or in a batch."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


class Backbone(nn.Module):
    """Base class of the adapters. Subclasses set ``name`` and implement ``load``/``hidden_states``."""

    name: ClassVar[str]
    one_pass: ClassVar[bool] = True  # all K slots come from one forward pass
    default_mask_token: ClassVar[str | None] = None

    def __init__(self, model: nn.Module, tokenizer, layout: SlotLayout, logit_shift: int = 0) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.layout = layout
        self.logit_shift = logit_shift
        self._prepare()
        self._accepts_position_ids = "position_ids" in inspect.signature(self.body.forward).parameters

    def _prepare(self) -> None:
        """Hook for adapters that must inspect the model before use."""

    # -- what subclasses provide -------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, *, mask_token: str | None, dtype: torch.dtype, trust_remote_code: bool,
             logit_shift: int = 0) -> "Backbone":
        raise NotImplementedError

    @property
    def body(self) -> nn.Module:
        """The part of the model that maps ids to final (normed) hidden states."""
        raise NotImplementedError

    def head_transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the LM head does before its vocabulary projection (masked LMs: dense, activation, LayerNorm)."""
        return hidden

    @property
    def output_projection(self) -> nn.Module:
        """The LM head's vocabulary projection: ``weight`` ``[V, H]`` and ``bias`` ``[V]`` or None."""
        return self.model.get_output_embeddings()

    def body_kwargs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._accepts_position_ids:
            kwargs["position_ids"] = position_ids_from_mask(attention_mask)
        return kwargs

    # -- shared ------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def max_positions(self) -> int | None:
        """Size of the learned position table; None where there is no hard limit (rotary decoders override)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def precision(self) -> str:
        dtype = next(self.model.parameters()).dtype
        return _PRECISIONS.get(dtype, str(dtype).removeprefix("torch."))

    def spec(self, settings: RetrieverConfig, source: str = "") -> ModelSpec:
        """What the engine needs to know of this loaded model (``ModelSpec``)."""
        return ModelSpec(settings, self.layout, self.hidden_size, self.vocab_size, self.max_positions, self.precision,
                         "torch", source)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.body(**self.body_kwargs(input_ids, attention_mask))
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the whole vocabulary."""
        return self.output_projection(self.head_transform(hidden))

    def content_logits(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``[B, K, A]``: ``lm_head(hidden)`` ``[B, K, H]`` read at the vocabulary ids ``[B, A]`` of each text only."""
        projection = self.output_projection
        rows = projection.weight[ids]  # [B, A, H]
        logits = torch.matmul(self.head_transform(hidden), rows.transpose(1, 2))
        return logits if projection.bias is None else logits + projection.bias[ids][:, None, :]

    def slot_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, slot_offsets: torch.Tensor,
                           tail_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Final hidden states ``[B, K, H]`` at the K slots (one pass); those the LM head reads (the same unless
        ``logit_shift``: decoders trained to predict the next token read the position before); and which
        slots a row produced (``[B, K]`` bool; None: all of them, as every one-pass backbone does).

        ``slot_offsets`` is ``arange(K)``: its length carries K, so exported graphs keep K dynamic.
        """
        hidden = self.hidden_states(input_ids, attention_mask)
        positions = hidden.shape[1] - tail_length - slot_offsets.shape[0] + slot_offsets
        slot_hidden = hidden.index_select(1, positions)
        logit_hidden = hidden.index_select(1, positions - self.logit_shift) if self.logit_shift else slot_hidden
        return slot_hidden, logit_hidden, None

    def slot_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    slot_offsets: torch.Tensor, tail_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states ``[B, K, H]`` and logits over the whole vocabulary ``[B, K, V]`` at the K slots
        (``-inf`` at slots a row did not produce)."""
        slot_hidden, logit_hidden, produced = self.slot_hidden_states(input_ids, attention_mask, slot_offsets,
                                                                      tail_length)
        logits = self.lm_head(logit_hidden)
        if produced is not None:
            logits = logits.masked_fill(~produced[:, :, None], float("-inf"))
        return slot_hidden, logits
