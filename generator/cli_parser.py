"""The argument parser of every ``paintguard`` subcommand: a usage error is one line, exit code 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

import torch

from generator.messages import one_line


def usage_error(message: str, prog: str) -> NoReturn:
    """Print ``paintguard: error: MESSAGE (see 'PROG --help')`` on one line and exit with code 2."""
    sys.stderr.write(f"paintguard: error: {one_line(message)} (see '{prog} --help')\n")
    raise SystemExit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, except that a bad argument prints ``paintguard: error: ...`` on one line instead of the usage."""

    def error(self, message: str) -> NoReturn:
        usage_error(message, self.prog)


def exit_code(exit_: SystemExit) -> int:
    """The status a ``sys.exit`` asked for: argparse's --help (0) or usage error (2, already printed)."""
    return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2


def device_option(name: str) -> str:
    """``--device``: a device this torch has, checked before anything is loaded or written (a CPU-only build has
    no 'cuda'). Checked without creating a context on it: every process of a multi-GPU run parses this."""
    try:
        device = torch.device("cuda" if name == "gpu" else name)  # Lightning's name for it too
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"'{name}' cannot be used here: not a torch device (cpu, cuda, cuda:1, "
                                         "...)") from None
    if device.type == "cpu":
        return name
    backend = getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        raise argparse.ArgumentTypeError(f"'{name}' cannot be used here: this torch ({torch.__version__}) has no "
                                         f"{device.type} device")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise argparse.ArgumentTypeError(f"'{name}' cannot be used here: {count} {device.type} device(s), "
                                         f"numbered from 0")
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
