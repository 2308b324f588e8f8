"""The argument parser of every ``paintguard`` subcommand: a usage error is one line, exit code 2."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import NoReturn

from generator.devices import unusable
from generator.messages import one_line


def usage_error(message: str, prog: str) -> NoReturn:
    """Print ``paintguard: error: MESSAGE (see 'PROG --help')`` on one line and exit with code 2."""
    sys.stderr.write(f"paintguard: error: {one_line(message)} (see '{prog} --help')\n")
    raise SystemExit(2)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written (a module docstring, wrapped already), and each option's default where it has
    one and its help does not give it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        unset = default is None or default is False or default == argparse.SUPPRESS or default == []
        if unset or not action.option_strings or "default" in text or isinstance(action, argparse._HelpAction):
            return text
        if isinstance(default, (list, tuple)):  # as typed: --pool 4 8, --heads 'two stems' 'one field'
            default = " ".join(shlex.quote(str(v)) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})".lstrip()


# the help of options many commands share, where a command gives none of its own
COMMON_HELP = {
    "inpainter": "the inpainter attacked: a shipped name, a .safetensors file or a LaMa folder",
    "generator": "a shipped generator's name or a .safetensors file",
    "device": "cpu, or cuda[:N] where this torch has it",
    "threads": "torch's CPU threads",
    "seed": "the random seed (crops, masks and noise starts)",
    "size": "the side of the square images or crops, in pixels",
    "batch_size": "images per batch",
    "steps": "optimiser steps",
    "split": "a photo split of 'make photos': train, val or test",
    "splits": "photo splits of 'make photos': train, val and/or test",
    "masks_per_image": "seeded masks drawn per photo",
    "reference_dir": "the cache of the optimiser's reference runs, made if missing (relative to the working folder)",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, except that a bad argument prints ``paintguard: error: ...`` on one line instead of the usage, a
    module docstring given as the description loses its reStructuredText quotes in ``--help``, and options show
    their defaults."""

    def __init__(self, *args, description: str | None = None, **kwargs) -> None:
        if kwargs.get("formatter_class") in (None, argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter):
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, description=description and description.replace("``", ""), **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None:
            action.help = COMMON_HELP.get(action.dest)
        return action

    def error(self, message: str) -> NoReturn:
        usage_error(message, self.prog)


def exit_code(exit_: SystemExit) -> int:
    """The status a ``sys.exit`` asked for: argparse's --help (0) or usage error (2, already printed)."""
    return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2


def device_option(name: str) -> str:
    """``--device``: a device this torch has (``generator.devices``), checked before anything is loaded or written.
    "gpu" is Lightning's name for cuda and stays as given."""
    reason = unusable("cuda" if name == "gpu" else name)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"'{name}' cannot be used here: {reason}")
    return name


def positive_int(text: str) -> int:
    """A count option (photos, masks, threads, repeats): a whole number of at least 1. A negative one would
    otherwise reach a slice (``paths[:n]``) and silently mean "all but the last n"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def mask_suffix_option(text: str) -> str:
    """``--mask-suffix``: masks are ``NAME{suffix}*.png`` beside each image, so an empty suffix would make every
    PNG the mask of any image whose name it starts with, and a path separator would look in another folder."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty (masks are NAME{suffix}*.png beside each image)")
    if "/" in text or os.sep in text:
        raise argparse.ArgumentTypeError(f"'{text}' names a folder; masks are NAME{{suffix}}*.png beside each image")
    return text
