"""Plain-text helpers shared by ingest and render: control characters out, lines cut at a word."""

from __future__ import annotations

import unicodedata

_TRAILING_PUNCTUATION = " ,;:.-–—"


def without_controls(text: str) -> str:
    """Text with control characters and line separators as spaces and lone surrogates dropped.

    They would break a mail header, or the UTF-8 that SQLite and the transports need.
    """
    if text.isprintable():
        return text
    return "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in text
        if unicodedata.category(ch) != "Cs"
    )


def one_line(text: str) -> str:
    """Text on one line: control characters out, runs of whitespace as one space."""
    return " ".join(without_controls(text).split())


def cut_at_word(text: str, max_chars: int) -> str:
    """Text cut at a word boundary to at most max_chars characters, ending in "…" if cut."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    if len(text) <= max_chars:
        return text
    limit = max_chars - 1
    space = text.rfind(" ", 0, limit + 1)
    head = text[:space] if space > 0 else text[:limit]
    return head.rstrip(_TRAILING_PUNCTUATION) + "…"
