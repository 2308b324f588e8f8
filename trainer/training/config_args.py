"""The ``--config`` files of a LightningCLI command line: which they are, which one sets a key, and the shipped
config that a ``configs/...`` name stands for outside the clone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from generator.resources import own_file

FLAGS = ("--config", "-c")  # LightningCLI's option and its short alias


def config_values(args: list[str]) -> list[tuple[int, str]]:
    """Where each ``--config`` value sits in ``args`` and what it is (a file, or YAML given inline)."""
    found = []
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            found.append((i, arg.removeprefix("--config=")))
        elif i and args[i - 1] in FLAGS:
            found.append((i, arg))
    return found


def own_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--config configs/...`` that names no file here replaced by the shipped config."""
    out = list(args)
    for i, value in config_values(args):
        found = own_file(value)  # anything else (YAML given inline, a path of another form) comes back as it was
        if found != Path(value):
            out[i] = ("--config=" if out[i].startswith("--config=") else "") + str(found)
    return out


def _holds(tree: Any, key: list[str], anywhere: bool) -> bool:
    """Whether the YAML ``tree`` has the dotted ``key`` at its top, or (``anywhere``) a bare key at any depth."""
    if isinstance(tree, list):
        return anywhere and any(_holds(item, key, anywhere) for item in tree)
    if not isinstance(tree, dict):
        return False
    if key[0] in tree and (len(key) == 1 or _holds(tree[key[0]], key[1:], False)):
        return True
    return anywhere and any(_holds(value, key, anywhere) for value in tree.values())


def config_file_with(key: str, args: list[str]) -> str | None:
    """The last ``--config`` file among ``args`` that sets ``key`` (dotted from the top, or a bare name at any
    depth), so that an unknown key's error can say where it is; None when no file can be read or holds it."""
    for _, file in reversed(config_values(args)):
        try:
            tree = yaml.safe_load(Path(file).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if _holds(tree, key.split("."), anywhere="." not in key):
            return file
    return None
