"""The sparse channel's content filter: only the input text's own words may carry weight.

The reference tokenises ``text.lower()`` with NLTK's ``word_tokenize``, drops English stopwords and
punctuation, and tokenises each remaining word on its own (no special tokens, no leading space); every
sub-word id of those words is allowed. NLTK's data (Punkt model, stopword list) is downloaded at run time
in the reference, which cannot work offline, so we ship the classic 179-word English list and use NLTK's
data-free pieces: an untrained Punkt sentence splitter and the Treebank-style ``NLTKWordTokenizer``.
This differs from ``word_tokenize`` only around abbreviations (``e.g.`` ends as ``e.g``).
Special tokens (``[UNK]``, the mask, ...) are never content.
"""
from __future__ import annotations

import string
from functools import lru_cache
from importlib import resources
from typing import Iterable, Sequence

import numpy as np


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    text = resources.files("pyserini_diffret").joinpath("resources/stopwords_en.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


_PUNCTUATION = frozenset(string.punctuation)
PAD_ID = -1  # fills a text's row of content ids after its own ids


@lru_cache(maxsize=1)
def _tokenizers():
    """NLTK's sentence and word tokenisers, imported on first use: importing nltk loads scikit-learn, which
    sets environment variables, and importing the engine must change nothing."""
    from nltk.tokenize import NLTKWordTokenizer  # noqa: PLC0415
    from nltk.tokenize.punkt import PunktSentenceTokenizer  # noqa: PLC0415

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


def content_words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` without stopwords and punctuation, in order."""
    dropped = english_stopwords() | _PUNCTUATION
    sentences, words = _tokenizers()
    return [word for sentence in sentences.tokenize(text.lower()) for word in words.tokenize(sentence) if word not in dropped]


class ContentFilter:
    """Maps texts to the vocabulary ids their own words tokenise into (cached per word)."""

    def __init__(self, tokenizer, vocab_size: int, excluded_ids: Iterable[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.excluded = frozenset(int(i) for i in excluded_ids) | frozenset(tokenizer.all_special_ids)
        self._word_ids: dict[str, tuple[int, ...]] = {}

    def _ids_of_words(self, words: Sequence[str]) -> None:
        missing = sorted({w for w in words if w not in self._word_ids})
        if not missing:
            return
        encoded = self.tokenizer(missing, add_special_tokens=False)["input_ids"]
        for word, ids in zip(missing, encoded):
            self._word_ids[word] = tuple(i for i in ids if i not in self.excluded and 0 <= i < self.vocab_size)

    def token_ids(self, text: str) -> np.ndarray:
        """Sorted unique allowed vocabulary ids for ``text``."""
        words = content_words(text)
        self._ids_of_words(words)
        ids = {i for word in words for i in self._word_ids[word]}
        return np.fromiter(sorted(ids), dtype=np.int64, count=len(ids))

    def ids(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), A]`` int64: each text's allowed ids (ascending), then ``PAD_ID`` up to the batch's
        largest count A (at least 1, so that no dimension is empty). The graph reads the LM head at these ids only."""
        rows = [self.token_ids(text) for text in texts]
        out = np.full((len(texts), max([1, *map(len, rows)])), PAD_ID, dtype=np.int64)
        for row, ids in zip(out, rows):
            row[:len(ids)] = ids
        return out

    def mask(self, texts: Sequence[str]) -> np.ndarray:
        """Boolean ``[len(texts), vocab_size]`` mask of allowed ids."""
        out = np.zeros((len(texts), self.vocab_size), dtype=bool)
        for row, text in enumerate(texts):
            out[row, self.token_ids(text)] = True
        return out
