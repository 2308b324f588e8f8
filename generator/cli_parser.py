"""The argument parser of every ``paintguard`` subcommand: a usage error is one line, exit code 2."""

from __future__ import annotations

import argparse
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse, except that a bad argument prints ``paintguard: error: ...`` on one line instead of the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"paintguard: error: {message} (see '{self.prog} --help')\n")
