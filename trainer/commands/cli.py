"""The ``paintguard`` command: a thin dispatcher to one module per subcommand.

Every subcommand module exposes ``main(argv) -> int``. Expected failures (bad
files, wrong checkpoints, bad arguments) print one line and exit non-zero;
set ``PAINTGUARD_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import traceback
import warnings
from pathlib import Path

# light imports only: torch and Lightning load with the subcommand, once the signal handlers are set
from generator.messages import PaintGuardWarning, one_line
from generator.resources import SOURCE_ROOT, project_root, version
from generator.signals import Stopped, stops_on_signals

COMMANDS: dict[str, tuple[str, str]] = {
    "protect": ("generator.protect_cli", "protect an image or a folder in one pass (--devices N: several processes)"),
    "export-onnx": ("generator.export_onnx_cli", "export a generator to ONNX (dynamic sizes), checked against PyTorch"),
    "web": ("generator.web_cli", "serve the in-browser protection page on this computer"),
    "optimize": ("trainer.commands.optimize", "protect one image with the 20-step optimiser (the paper's method)"),
    "inpaint": ("trainer.commands.inpaint", "inpaint an image as an editor would: see what a protected image gives"),
    "demo": ("trainer.commands.demo", "the main job on the embedded defaults: train briefly, protect, compare"),
    "train": ("trainer.commands.train", "train the one-pass generator against a frozen inpainter (LightningCLI)"),
    "teacher-cache": ("trainer.commands.teacher_cache", "run the 20-step optimiser once over training crops, for distillation"),
    "gradient-cache": ("trainer.commands.gradient_cache",
                       "cache the inpainter's input gradients (and k-step teacher noises) over training crops"),
    "fit-inpainter": ("trainer.commands.fit_inpainter", "train an inpainter such as lama-tiny (LightningCLI)"),
    "evaluate-inpainter": ("trainer.commands.evaluate_inpainter", "score an inpainter on held-out images against baselines"),
    "compare": ("trainer.commands.compare", "protection methods side by side: strength, robustness, transfer, speed"),
}

USAGE = "usage: paintguard COMMAND [ARGS]\n\ncommands:\n" + "\n".join(
    f"  {name:<20} {help_}" for name, (_, help_) in COMMANDS.items()
) + "\n\nRun 'paintguard COMMAND --help' for a command's options; 'paintguard --version' says which PaintGuard runs."


class UsageError(ValueError):
    """Bad arguments or input that the user can fix; reported as one line."""


def fail(message: str, code: int = 2) -> int:
    print(f"paintguard: error: {message}", file=sys.stderr)
    return code


def run_guarded(func, *args) -> int:
    """Call ``func``; turn expected errors into a one-line message and exit code 2."""
    try:
        return int(func(*args) or 0)
    except SystemExit as exit_:
        from generator.cli_parser import exit_code

        if isinstance(exit_.code, str):  # sys.exit("why"): Python would print it; say it as every error is said
            return fail(exit_.code)
        return exit_code(exit_)
    except (KeyboardInterrupt, Stopped) as stop:  # the shell's status for a signal: 128 + its number
        signum = getattr(stop, "signum", signal.SIGINT)
        # a command adds a note (BaseException.add_note) on what it leaves: "3 whole shards kept in ..."
        said = ["interrupted" if signum == signal.SIGINT else "terminated", *getattr(stop, "__notes__", [])]
        return fail("; ".join(said), 128 + signum)
    except (ValueError, OSError, RuntimeError, MemoryError) as err:
        if os.environ.get("PAINTGUARD_DEBUG"):
            traceback.print_exc()  # then the same line and exit status as without it: scripts see no difference
        if isinstance(err, MemoryError):  # numpy's and torch's CPU allocations; compare and evaluate-inpainter
            return fail("out of memory: try a smaller image, batch or size")  # name their own options
        text = str(err).strip().splitlines()
        return fail(text[0] if text else type(err).__name__)


# PaintGuard's own packages: their warnings are the commands' notes; a library's keeps its own format
OWN = tuple(str(SOURCE_ROOT / package) + os.sep for package in ("generator", "trainer"))


def one_line_warning(message, category, filename, lineno, line=None, *, fallback) -> str:
    """PaintGuard's warnings as the commands' own notes, one line without a source excerpt; others by ``fallback``."""
    if issubclass(category, PaintGuardWarning) or str(Path(filename).resolve()).startswith(OWN):
        return f"paintguard: warning: {one_line(message)}\n"
    return fallback(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):  # and where its shipped files are: the clone, or an installed copy's
        print(f"paintguard {version()} ({project_root()})")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        return fail(f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    previous = warnings.formatwarning
    warnings.formatwarning = functools.partial(one_line_warning, fallback=previous)
    try:
        with stops_on_signals():  # the subcommand's imports take seconds: Ctrl-C there is one line too
            return run_guarded(_run, COMMANDS[name][0], rest)
    finally:
        warnings.formatwarning = previous


def _run(module: str, argv: list[str]) -> int:
    return importlib.import_module(module).main(argv)


if __name__ == "__main__":
    sys.exit(main())
