"""Text for people: whatever an exception says, on one line; warnings that point at the user's line."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

PACKAGE = str(Path(__file__).parent) + os.sep


def one_line(message: object, limit: int | None = None) -> str:
    """``message`` (an exception or text) with every run of whitespace, newlines included, made one space, cut at
    ``limit`` characters; an exception without text gives its type's name."""
    text = " ".join(str(message).split())[:limit]
    if not text and isinstance(message, BaseException):
        return type(message).__name__
    return text


def counted(n: int, noun: str) -> str:
    """``1 image``, ``2 images``: a count and its noun (plural in -s)."""
    return f"{n} {noun}{'s' * (n != 1)}"


class PaintGuardWarning(UserWarning):
    """A warning for the user of PaintGuard: the commands print it as their own one-line note, wherever it
    points (in a folder run the nearest frame outside the package is Lightning's or torch's)."""


def warn_user(message: str) -> None:
    """Warn with ``message``, pointing at the first frame outside ``generator``: the user's own line, however deep
    the package's calls (Python 3.12's ``skip_file_prefixes``)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, PaintGuardWarning, stacklevel=level)
