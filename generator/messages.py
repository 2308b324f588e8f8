"""Error text for people: whatever an exception says, on one line."""

from __future__ import annotations


def one_line(message: object, limit: int | None = None) -> str:
    """``message`` (an exception or text) with every run of whitespace, newlines included, made one space, cut at
    ``limit`` characters; an exception without text gives its type's name."""
    text = " ".join(str(message).split())[:limit]
    if not text and isinstance(message, BaseException):
        return type(message).__name__
    return text
