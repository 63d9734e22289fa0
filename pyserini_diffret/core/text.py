"""How a document's fields become text: one rule for what is encoded, one for what is stored, one clip.

- Encoded: ``title + separator + text`` (the reference's BEIR rule, separator ". "); the text alone
  without a title, the title alone without a text.
- Stored (the ``contents`` of a JsonVectorCollection record): the fields joined by a newline, as
  Pyserini's own ``pyserini.encode`` writes them, so that our collections and Pyserini's are alike.
- Clipped: texts longer than ``DEFAULT_MAX_CHARS`` characters are cut before tokenising. Only the first
  ``max_document_length`` tokens are encoded anyway; the cut bounds the work of tokenising and of the
  sparse content filter (which reads the whole text) on enormous inputs.
"""
from __future__ import annotations

DEFAULT_MAX_CHARS = 200_000


def join_title(title: str | None, text: str, separator: str = ". ") -> str:
    """The text encoded for a document: title and text joined, or whichever of them there is."""
    return f"{title}{separator}{text}" if title and text else (title or text)


def stored_contents(title: str | None, text: str) -> str:
    """The ``contents`` stored with a document's vectors."""
    return f"{title}\n{text}" if title else text


def clip_text(text: str | None, max_chars: int | None) -> tuple[str, bool]:
    """``text`` (``None`` -> ``""``) cut to ``max_chars`` characters (no cut when falsy); and whether it was cut."""
    text = text or ""
    if max_chars and len(text) > max_chars:
        return text[:max_chars], True
    return text, False
