"""``paintguard protect`` on a terminal: a long single-image run says what it runs before its silent wait."""

import sys

import pytest

from generator import protect_cli
from trainer.inpainting.inpainter import save_inpainter

from .test_protect_cli import protect


@pytest.mark.parametrize("terminal", [True, False])
def test_a_long_run_says_what_it_runs_on_a_terminal_only(tmp_path, pair, generator_path, tiny_inpainter,
                                                         capsys, monkeypatch, terminal):
    image, mask = pair
    inpainter = save_inpainter(tiny_inpainter, tmp_path / "inp.safetensors")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert protect(image, "--mask", mask, "-o", tmp_path / "g.png", "--checkpoint", generator_path) == 0
    assert capsys.readouterr().err == ""  # one quick pass: nothing to wait for
    assert protect(image, "--mask", mask, "-o", tmp_path / "h.png", "--checkpoint", generator_path,
                   "--method", "hybrid", "--inpainter", inpainter) == 0
    note = f"paintguard: note: protecting '{image}' (52x40) with 5 optimiser steps (hybrid); this takes a while on a CPU\n"
    assert capsys.readouterr().err == (note if terminal else "")
    monkeypatch.setattr(protect_cli, "LONG_PIXELS", 52 * 40)  # a large image, even for the generator
    assert protect(image, "--mask", mask, "-o", tmp_path / "big.png", "--checkpoint", generator_path) == 0
    assert ("with the generator; this takes a while" in capsys.readouterr().err) == terminal
