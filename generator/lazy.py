"""A package's public names, imported on first use: ``import generator`` and the ``paintguard`` command start
without torch or Lightning, so that ``--help`` is quick and Ctrl-C during start-up is one line, not a traceback."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose public names are the keys of ``exports`` (each
    mapped to the module that defines it); a name once looked up is kept in ``namespace``, the package's own."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later lookups skip this hook
        return value

    def __dir__() -> list[str]:
        return sorted(exports)  # the public names once each, not the package's own imports

    return __getattr__, __dir__
