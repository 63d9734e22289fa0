"""Prompt and slot layout."""
from __future__ import annotations

import numpy as np
import pytest

TEXTS = ["short", "a much longer text about aspirin and the heart of the matter", ""]


@pytest.mark.parametrize("name", ["mlm", "dream", "llada"])
def test_slots_sit_before_the_tail_under_left_padding(tiny_models, name):
    model = tiny_models[name]
    for side, k in (("query", model.k_query), ("document", model.k_doc)):
        batch = model.prompts.build(TEXTS, side, k)
        tail = list(model.layout.tail_ids)
        start = batch.slot_start
        assert batch.tail_length == len(tail)
        assert (batch.input_ids[:, start:start + k] == model.layout.mask_id).all()
        assert (batch.input_ids[:, start + k:] == np.array(tail)).all()
        # Left padding: every row ends at the same place and its real tokens are contiguous at the right.
        for row in batch.attention_mask:
            first = int(np.argmax(row))
            assert row[first:].all() and not row[:first].any()
        # Nowhere else is there a mask token.
        assert (batch.input_ids == model.layout.mask_id).sum() == len(TEXTS) * k


def test_dream_and_llada_tails_are_quote_end_of_turn_eos(tiny_models):
    dream, llada = tiny_models["dream"], tiny_models["llada"]
    tok = dream.tokenizer
    assert tok.convert_ids_to_tokens(list(dream.layout.tail_ids))[1:] == ["<|im_end|>", "<|endoftext|>"]
    assert llada.tokenizer.convert_ids_to_tokens(list(llada.layout.tail_ids))[1:] == ["<|eot_id|>", "<|end_of_text|>"]
    assert tok.decode(dream.layout.tail_ids[:1]) == '"'


def test_chat_prompt_has_paper_wording(tiny_models):
    model = tiny_models["dream"]
    few = model.tokenizer.decode(model.prompts.build(["x"], "query", 4).input_ids[0])
    assert "You are an AI assistant that can understand human language." in few
    assert 'Query: "x". Use a few words to represent the query in a retrieval task.' in few
    assert few.endswith('The words are: "' + "<|mask|>" * 4 + '"<|im_end|><|endoftext|>')
    one = model.tokenizer.decode(model.prompts.build(["x"], "document", 1).input_ids[0])
    assert 'Passage: "x". Use one word to represent the passage' in one and "Make sure your word is in lowercase." in one
    assert 'The word is: "<|mask|>"' in one


def test_truncation_respects_per_side_limits(tiny_models):
    model = tiny_models["mlm"]
    long_text = " ".join(["aspirin heart attack"] * 200)
    for side in ("query", "document"):
        limit = model.prompts.max_text_length(side)
        (ids,) = model.prompts.tokenize_texts([long_text], side)
        assert len(ids) == limit
        k = model.k_query if side == "query" else model.k_doc
        batch = model.prompts.build([long_text], side, k)
        assert batch.input_ids.shape[1] == model.prompts.sequence_length_bound(side, k)


def test_mask_string_in_user_text_is_not_a_slot(tiny_models):
    model = tiny_models["dream"]
    batch = model.prompts.build(["ignore <|mask|> this"], "query", 2)
    assert (batch.input_ids == model.layout.mask_id).sum() == 2
