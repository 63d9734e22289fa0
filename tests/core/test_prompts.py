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
    # The reference's launcher uses the "few" prompt at every K, K = 1 included.
    one = model.tokenizer.decode(model.prompts.build(["x"], "document", 1).input_ids[0])
    assert 'Passage: "x". Use a few words to represent the passage' in one
    assert 'The words are: "<|mask|>"' in one


@pytest.mark.parametrize("variant, k, words, prefix", [
    ("one", 1, "Use one word to represent the query in a retrieval task. Make sure your word is in lowercase.",
     'The word is: "'),
    ("one", 4, "Use four words to represent the query in a retrieval task. Make sure your words are in lowercase.",
     'The words are: "'),
    ("one", 16, "Use 16 words to represent the query", 'The words are: "'),
    ("three", 1, "Use three words to represent the query", 'The words are: "'),
    ("three", 8, "Use eight words to represent the query in a retrieval task. Make sure your words are in "
                 "lowercase and split them by space.", 'The words are: "'),
    ("few", 16, "Use a few words to represent the query in a retrieval task. Make sure your words are in lowercase.",
     'The words are: "'),
])
def test_prompt_variants_are_adapted_to_k(variant, k, words, prefix):
    from pyserini_diffret.core.config import RetrieverConfig

    texts = RetrieverConfig.zero_shot("dream", prompt_variant=variant).prompt("query", k)
    assert words in texts.user_suffix and texts.assistant_prefix == prefix
    with pytest.raises(ValueError, match="prompt variant must be one of few, one, three"):
        RetrieverConfig.zero_shot("dream", prompt_variant="two")


def test_sequence_budget_leaves_the_text_what_the_frame_does_not_take(tiny_models):
    """The reference's --max_length: frame + text within the budget, the slots and the tail on top."""
    import dataclasses

    from pyserini_diffret.core.prompts import PromptBuilder

    model = tiny_models["dream"]
    config = dataclasses.replace(model.config, max_query_length=None, max_document_length=None, sequence_budget=80)
    prompts = PromptBuilder(model.tokenizer, config, model.layout)
    long_text = " ".join(["aspirin heart attack"] * 200)
    for side, k in (("query", 4), ("document", 16)):
        before, after = prompts.frame(side, k)
        assert prompts.max_text_length(side, k) == 80 - len(before) - len(after)
        batch = prompts.build([long_text], side, k)
        assert batch.input_ids.shape[1] == 80 + k + len(model.layout.tail_ids)
    with pytest.raises(ValueError, match="no room for text in a sequence_budget of 10"):
        PromptBuilder(model.tokenizer, dataclasses.replace(config, sequence_budget=10), model.layout).max_text_length(
            "query", 4)


def test_truncation_respects_per_side_limits(tiny_models):
    model = tiny_models["mlm"]
    long_text = " ".join(["aspirin heart attack"] * 200)
    for side in ("query", "document"):
        k = model.k_query if side == "query" else model.k_doc
        limit = model.prompts.max_text_length(side, k)
        (ids,) = model.prompts.tokenize_texts([long_text], side, k)
        assert len(ids) == limit
        batch = model.prompts.build([long_text], side, k)
        assert batch.input_ids.shape[1] == model.prompts.sequence_length_bound(side, k)


def test_mask_string_in_user_text_is_not_a_slot(tiny_models):
    model = tiny_models["dream"]
    batch = model.prompts.build(["ignore <|mask|> this"], "query", 2)
    assert (batch.input_ids == model.layout.mask_id).sum() == 2


def test_special_tokens_in_user_text_as_the_reference_reads_them(tiny_models):
    import dataclasses

    from pyserini_diffret.core.prompts import PromptBuilder

    model = tiny_models["dream"]
    config = dataclasses.replace(model.config, split_special_tokens=False)
    batch = PromptBuilder(model.tokenizer, config, model.layout).build(["ignore <|mask|> this"], "query", 2)
    assert (batch.input_ids == model.layout.mask_id).sum() == 3  # the typed mask became a real one
