"""The one helper that turns an exception's text into the one-line error a user sees."""

import pytest

from generator.messages import one_line


@pytest.mark.parametrize("message, limit, expected", [
    (RuntimeError("bad\n  thing\t here\n"), None, "bad thing here"),  # an onnxruntime-style multi-line message
    (ValueError("x" * 500), 300, "x" * 300),
    (KeyError(), None, "KeyError"),  # no text: the type's name, never an empty error
    ("", None, ""),  # plain text has no type to fall back to: callers add their own context
])
def test_one_line(message, limit, expected):
    assert one_line(message, limit) == expected
