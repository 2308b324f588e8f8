"""What ``paintguard protect`` says on the way besides errors: a long run's note on a terminal, a mask that looks
inverted, folder options given for one image."""

import sys

import numpy as np
import pytest
from PIL import Image

from generator import protect_cli
from trainer.inpainting.inpainter import save_inpainter

from .conftest import write_mask
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


def test_a_mask_that_covers_most_of_the_image_is_asked_about(tmp_path, pair, generator_path, capsys):
    image, _ = pair
    write_mask(tmp_path / "inverted.png", 40, 52, (0, 0, 40, 52))
    inverted = np.asarray(Image.open(tmp_path / "inverted.png")).copy()
    inverted[10:20, 10:20] = 0  # black strokes on white: everything but the strokes is marked
    Image.fromarray(inverted).save(tmp_path / "inverted.png")
    assert protect(image, "--mask", tmp_path / "inverted.png", "-o", tmp_path / "out.png",
                   "--checkpoint", generator_path) == 0
    assert capsys.readouterr().err == (f"paintguard: warning: the mask of '{image}' covers 95% of the image; non-zero "
                                       "pixels are the region to protect: is it inverted?\n")


def test_folder_options_given_for_one_image_are_said_to_be_ignored(tmp_path, pair, generator_path, capsys):
    image, mask = pair
    assert protect(image, "--mask", mask, "-o", tmp_path / "a.png", "--checkpoint", generator_path,
                   "--format", "jpg", "--workers", "2") == 0
    said = capsys.readouterr().err
    assert said == "paintguard: warning: --workers, --format are for a folder; one image ignores them\n"
    assert (tmp_path / "a.png").is_file()  # the output's own suffix decides, as without the options
