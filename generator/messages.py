"""Text for people: whatever an exception says, on one line; warnings that point at the user's line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = str(Path(__file__).parent) + os.sep


def one_line(message: object, limit: int | None = None) -> str:
    """``message`` (an exception or text) with every run of whitespace, newlines included, made one space, cut at
    ``limit`` characters; an exception without text gives its type's name."""
    text = " ".join(str(message).split())[:limit]
    if not text and isinstance(message, BaseException):
        return type(message).__name__
    return text


def user_stacklevel() -> int:
    """The ``stacklevel`` for a warning raised by the function that calls this: the first frame outside
    ``generator``, the user's own line, however deep the package's calls (Python 3.12's ``skip_file_prefixes``)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
