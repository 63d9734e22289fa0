"""Prompt and slot layout, in one place, for every backbone and runtime.

Per text:  ``[prefix][text tokens, truncated][suffix + assistant prefix][MASK x K][tail]``.
Instruction backbones render the prefix and suffix with the tokenizer's own chat template (system and
user turns, generation prompt) around a sentinel; masked LMs use the same words without a template,
between their ``[CLS]``/``[SEP]``-style tokens. The text is tokenised on its own (no special tokens),
truncated per side and spliced in at the token level. Sequences are left-padded, so the K slots always
sit at ``[L - K - T, L - T)`` where ``T`` is the tail length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pyserini_diffret.core.config import PromptTexts, RetrieverConfig

_SENTINEL = "XSENTINELX"
SIDES = ("query", "document")


@dataclass(frozen=True)
class SlotLayout:
    """What a backbone puts around the text: chat template or not, mask id, tail tokens, pad id."""

    chat_template: bool
    mask_id: int | None  # None: no mask slots (autoregressive baseline decodes them instead)
    tail_ids: tuple[int, ...]
    pad_id: int
    start_ids: tuple[int, ...] = ()  # e.g. [CLS] for masked LMs without a chat template


@dataclass
class EncodedBatch:
    input_ids: np.ndarray  # int64 [B, L], left-padded
    attention_mask: np.ndarray  # int64 [B, L]
    num_slots: int
    tail_length: int

    @property
    def slot_start(self) -> int:
        return self.input_ids.shape[1] - self.num_slots - self.tail_length


class PromptBuilder:
    def __init__(self, tokenizer, config: RetrieverConfig, layout: SlotLayout) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.layout = layout
        self._frames: dict[tuple[str, int], tuple[list[int], list[int]]] = {}

    def max_text_length(self, side: str, k: int) -> int:
        """Text tokens kept for ``side``: its ``max_*_length``, or what ``sequence_budget`` leaves beside the
        prompt frame (the reference's rule; the slots and the tail come on top)."""
        explicit = self.config.max_query_length if side == "query" else self.config.max_document_length
        if explicit is not None:
            return explicit
        before, after = self.frame(side, k)
        left = self.config.sequence_budget - len(before) - len(after)
        if left < 1:
            raise ValueError(f"the {side} prompt takes {len(before) + len(after)} tokens: no room for text in a "
                             f"sequence_budget of {self.config.sequence_budget}")
        return left

    def frame(self, side: str, k: int) -> tuple[list[int], list[int]]:
        """Token ids before and after the text for ``side`` with ``k`` slots (cached)."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        key = (side, k)
        if key not in self._frames:
            self._frames[key] = self._render(self.config.prompt(side, k))
        return self._frames[key]

    def _render(self, texts: PromptTexts) -> tuple[list[int], list[int]]:
        encode = lambda s: self.tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
        if self.layout.chat_template:
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError("this backbone needs a tokenizer with a chat template; the tokenizer has none")
            messages = [{"role": "system", "content": texts.system}] if texts.system else []
            messages.append({"role": "user", "content": texts.user_prefix + _SENTINEL + texts.user_suffix})
            rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            before, sentinel, after = rendered.partition(_SENTINEL)
            if not sentinel:
                raise ValueError("the chat template dropped the user text; cannot place the text in the prompt")
            return encode(before), encode(after + texts.assistant_prefix)
        before = list(self.layout.start_ids) + encode(texts.user_prefix)
        return before, encode(texts.user_suffix + " " + texts.assistant_prefix)

    def sequence_length_bound(self, side: str, k: int) -> int:
        """Longest sequence this side can produce (text at its limit)."""
        before, after = self.frame(side, k)
        slots = k if self.layout.mask_id is not None else 0
        return len(before) + self.max_text_length(side, k) + len(after) + slots + len(self.layout.tail_ids)

    def tokenize_texts(self, texts: Sequence[str], side: str, k: int) -> list[list[int]]:
        if not texts:
            return []
        # By default special-token strings inside user text stay plain text: a "<|mask|>" typed by a user must
        # not become a slot (split_special_tokens=False is the reference's behaviour).
        return self.tokenizer(
            list(texts),
            add_special_tokens=False,
            truncation=True,
            max_length=self.max_text_length(side, k),
            split_special_tokens=self.config.split_special_tokens,
        )["input_ids"]

    def build(self, texts: Sequence[str], side: str, k: int) -> EncodedBatch:
        before, after = self.frame(side, k)
        slots = [self.layout.mask_id] * k if self.layout.mask_id is not None else []
        tail = list(self.layout.tail_ids)
        rows = [before + ids + after + slots + tail for ids in self.tokenize_texts(texts, side, k)]
        length = max((len(r) for r in rows), default=0)
        input_ids = np.full((len(rows), length), self.layout.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), length), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, length - len(row):] = row
            attention_mask[i, length - len(row):] = 1
        return EncodedBatch(input_ids, attention_mask, num_slots=k, tail_length=len(tail))
