"""The autoregressive baseline (PromptReps): the K representations are decoded one token at a time.

A causal LM reads the prompt (ending in ``The words are: "``); the hidden state and logits at its last
position are the first representation, then K-1 greedy decode steps with a KV cache give the others.
A row stops at the closing quote or a special token: that step and every later one is zeroed (hidden
state 0, no weight). The loop ends early once every row has stopped. It exists to
measure what the diffusion backbones save: K slots cost it K passes.
"""
from __future__ import annotations

import inspect

import torch

from pyserini_diffret.backbones.base import position_ids_from_mask
from pyserini_diffret.backbones.decoder import DecoderBackbone


class AutoregressiveBackbone(DecoderBackbone):
    name = "ar"
    one_pass = False
    bidirectional = False
    default_mask_token = None

    def _prepare(self) -> None:
        super()._prepare()
        tokenizer = self.tokenizer
        # As PromptReps: a step stops when its decoded token contains the closing quote.
        pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        stop = set(tokenizer.all_special_ids) | {i for i, piece in enumerate(pieces) if '"' in piece}
        self.__dict__["_stop_ids"] = torch.tensor(sorted(stop), dtype=torch.long)
        parameters = inspect.signature(self.body.forward).parameters
        self.__dict__["_cache_kwarg"] = "cache" if "cache" in parameters else "past_key_values"

    def _step(self, **kwargs):
        """One body pass with a KV cache (transformers 5 names it ``cache``; remote code may not)."""
        cache = kwargs.pop("cache", None)
        if self._cache_kwarg == "cache":
            out = self.body(cache=cache, use_cache=True, **kwargs)
            return out.last_hidden_state, out.cache
        out = self.body(past_key_values=cache, use_cache=True, **kwargs)
        return out.last_hidden_state, out.past_key_values

    def slot_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, slot_offsets: torch.Tensor,
                           tail_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The K decoded steps' hidden states (zero from the step a row stops), twice (the LM head reads the
        same states), and which steps each row produced."""
        k = slot_offsets.shape[0]
        position_ids = position_ids_from_mask(attention_mask)
        states, cache = self._step(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        hidden = states[:, -1]
        next_position = position_ids[:, -1:] + 1
        stop_ids = self._stop_ids.to(input_ids.device)
        hiddens, produced = [], []
        alive = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for step in range(k):
            hiddens.append(hidden * alive[:, None])
            produced.append(alive)
            if step == k - 1:
                break
            token = self.lm_head(hidden).argmax(-1)
            alive = alive & ~torch.isin(token, stop_ids)
            if not alive.any():
                pad = k - len(hiddens)
                hiddens.extend([torch.zeros_like(hidden)] * pad)
                produced.extend([alive] * pad)
                break
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
            states, cache = self._step(input_ids=token[:, None], attention_mask=attention_mask,
                                       position_ids=next_position, cache=cache)
            hidden = states[:, -1]
            next_position = next_position + 1
        hidden = torch.stack(hiddens, 1)
        return hidden, hidden, torch.stack(produced, 1)
