"""Which inpainter the optimiser steps of ``paintguard protect --method hybrid/refine`` attack without --inpainter:
the one the generator was trained against, as its checkpoint records it."""

import os
import shutil

from generator.protector import save_generator
from generator.unet import NoiseUNet, UNetConfig
from trainer.inpainting.inpainter import save_inpainter

from .conftest import reactive_inpainter
from .test_protect_cli import protect


def test_hybrid_attacks_the_inpainter_its_generator_was_trained_against(tmp_path, pair, tiny_inpainter, capsys):
    """Without --inpainter the optimiser steps attacked lama-tiny, whatever the generator had been trained against."""
    image, mask = pair
    inpainter = save_inpainter(tiny_inpainter, tmp_path / "inp.safetensors")
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    own = save_generator(net, tmp_path / "own.safetensors", inpainter=str(inpainter))
    gone = save_generator(net, tmp_path / "gone.safetensors", inpainter=str(tmp_path / "big-lama"))
    run = ["--mask", mask, "--method", "hybrid", "--steps", "1"]
    assert protect(image, *run, "-o", tmp_path / "a.png", "--checkpoint", own) == 0
    assert protect(image, *run, "-o", tmp_path / "b.png", "--checkpoint", own, "--inpainter", inpainter) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert capsys.readouterr().err == ""
    assert protect(image, *run, "-o", tmp_path / "c.png", "--checkpoint", gone) == 0
    assert capsys.readouterr().err == (f"paintguard: warning: the generator was trained against '{tmp_path}/big-lama', "
                                       "which is not here; its optimiser steps attack lama-tiny (pass --inpainter)\n")


def test_a_recorded_path_is_checked_by_its_weights_and_found_beside_the_generator(tmp_path, pair, tiny_inpainter,
                                                                                  capsys, monkeypatch):
    """The path was read from the working folder and its weights not compared: another file of that name was
    attacked without a word, and the right one beside the generator was not found."""
    image, mask = pair
    (tmp_path / "shipped").mkdir()
    inpainter = save_inpainter(tiny_inpainter, tmp_path / "shipped" / "mine.safetensors")
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    generator = save_generator(net, tmp_path / "shipped" / "gen.safetensors", inpainter="mine.safetensors",
                               inpainter_sha=tiny_inpainter.fingerprint())
    run = ["--mask", mask, "--method", "hybrid", "--steps", "1", "--checkpoint", generator]
    assert protect(image, *run, "-o", tmp_path / "want.png", "--inpainter", inpainter) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert protect(image, *run, "-o", tmp_path / "beside.png") == 0  # no mine.safetensors here: the one beside it
    assert (tmp_path / "beside.png").read_bytes() == (tmp_path / "want.png").read_bytes()
    assert capsys.readouterr().err == ""
    save_inpainter(reactive_inpainter(1), tmp_path / "elsewhere" / "mine.safetensors")  # same name, other weights
    assert protect(image, *run, "-o", tmp_path / "here.png") == 0  # still the right one, beside the generator
    assert (tmp_path / "here.png").read_bytes() == (tmp_path / "want.png").read_bytes()
    capsys.readouterr()
    shutil.move(inpainter, tmp_path / "moved.safetensors")
    assert protect(image, *run, "-o", tmp_path / "other.png") == 0
    assert capsys.readouterr().err == (
        "paintguard: warning: the generator was trained against 'mine.safetensors', 'mine.safetensors' holds "
        "other weights; its optimiser steps attack lama-tiny (pass --inpainter)\n")
    assert os.path.exists(tmp_path / "other.png")


def test_an_ensembles_generator_says_which_inpainter_its_steps_attack(tmp_path, pair, capsys):
    image, mask = pair
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    generator = save_generator(net, tmp_path / "ens.safetensors", inpainter="a.safetensors,b")
    assert protect(image, "--mask", mask, "--method", "hybrid", "--steps", "1", "--checkpoint", generator,
                   "-o", tmp_path / "o.png") == 0
    assert capsys.readouterr().err == ("paintguard: note: the generator was trained against several inpainters "
                                       "(a.safetensors,b); its optimiser steps attack lama-tiny (pass --inpainter "
                                       "to choose)\n")
