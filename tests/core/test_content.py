"""The content filter: only the text's own words."""
from pyserini_diffret.core.content import content_words, english_stopwords


def test_words_are_lowercased_without_stopwords_and_punctuation():
    words = content_words("The Fox's tail isn't RED. It jumps, e.g. over (3) dogs!")
    assert "the" not in words and "." not in words and "," not in words and "!" not in words
    assert {"fox", "tail", "red", "jumps", "dogs", "3"} <= set(words)
    assert "'s" in words  # Treebank splits clitics off, as NLTK's word_tokenize does


def test_stopword_list_is_the_classic_english_list():
    stop = english_stopwords()
    assert len(stop) == 179 and {"the", "and", "wouldn't", "ourselves"} <= stop


def test_sparse_keys_come_from_the_texts_own_words(tiny_models):
    text = "Aspirin reduces fractures in the heart"
    for model in tiny_models.values():
        allowed = set(model.vocabulary[model.content.token_ids(text)].tolist())
        for weights in (model.encode_queries([text]).weights[0], model.encode_documents([text]).weights[0]):
            assert set(weights) <= allowed


def test_special_and_mask_tokens_are_never_content(tiny_models):
    model = tiny_models["mlm"]
    ids = set(model.content.token_ids("[MASK] [CLS] unknownwordzzz aspirin").tolist())
    assert not ids & set(model.tokenizer.all_special_ids)


def test_content_ids_are_each_texts_sorted_ids_padded_with_minus_one(tiny_models):
    from pyserini_diffret.core.content import PAD_ID

    model = tiny_models["mlm"]
    texts = ["aspirin reduces heart fractures", "the of and", "bone"]
    ids = model.content.ids(texts)
    assert ids.dtype.kind == "i" and ids.shape[0] == 3
    for row, text in zip(ids, texts):
        own = model.content.token_ids(text)
        assert row[:len(own)].tolist() == own.tolist() and (row[len(own):] == PAD_ID).all()
    assert ids.shape[1] == max(len(model.content.token_ids(t)) for t in texts)
    assert model.content.ids(["the of and"]).tolist() == [[PAD_ID]]  # never an empty dimension
