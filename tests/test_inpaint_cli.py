"""``paintguard inpaint``: the editor's view of an image, and how far protection moved it."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from generator.io import read_image, read_mask
from trainer.commands.cli import main
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.losses import prepare_task, protection_losses, psnr_from_mse

from .conftest import one_line_error, write_mask, write_rgb

PRINTED = re.compile(r"fill of the mask scores (-?[\d.]+) dB PSNR against solid (\w+)[^;]*"
                     r"(?:; on the original (-?[\d.]+) dB: the attack loss ([\d.]+) -> ([\d.]+) \(([-+][\d.]+)%\), "
                     r"the two images (\d+) 8-bit levels apart at most)?; wrote")


def attack_psnr(inpainter_path, image_path, mask_path) -> float:
    """The optimiser's attack term (trainer.objective.losses) on an image file, as optimize and compare score it."""
    inpainter = load_inpainter(inpainter_path)
    image = read_image(image_path)[None]
    mask = read_mask(mask_path, size=tuple(image.shape[-2:]))[None]
    with torch.no_grad():
        attack = protection_losses(inpainter, image, prepare_task(inpainter, image, mask))["attack"]
    return psnr_from_mse(attack).item()


def test_inpaint_writes_the_editors_fill_and_scores_it(tmp_path, files, capsys):
    image, mask, inpainter, pixels = files
    out = tmp_path / "edited.png"
    assert main(["inpaint", str(image), "--mask", str(mask), "-o", str(out), "--inpainter", str(inpainter)]) == 0
    found = PRINTED.search(capsys.readouterr().out)
    assert found and found.group(3) is None  # no original: no comparison
    # the loss that the optimiser and compare score, computed through their own path
    assert float(found.group(1)) == pytest.approx(attack_psnr(inpainter, image, mask), abs=0.006)
    edited = np.asarray(Image.open(out)).astype(np.int16)
    hole = np.asarray(Image.open(mask)) > 0
    assert np.array_equal(edited[~hole], pixels[~hole])  # LaMa's result: the image kept outside the mask
    assert np.abs(edited[hole] - pixels[hole]).mean() > 10  # and the network's fill inside it
    with torch.no_grad():
        fill = load_inpainter(inpainter)(read_image(image)[None], read_mask(mask)[None])[0]
    assert np.abs(edited - (fill.permute(1, 2, 0).numpy() * 255)).max() <= 0.5 + 1e-3  # rounded to nearest


def test_inpaint_against_the_original_says_what_protection_did(tmp_path, files, capsys):
    image, mask, inpainter, pixels = files
    protected = tmp_path / "protected.png"
    assert main(["optimize", str(image), str(mask), "-o", str(protected), "--inpainter", str(inpainter),
                 "--steps", "5"]) == 0
    capsys.readouterr()
    out = tmp_path / "edited.png"
    assert main(["inpaint", str(protected), "--mask", str(mask), "-o", str(out), "--inpainter", str(inpainter),
                 "--original", str(image)]) == 0
    found = PRINTED.search(capsys.readouterr().out)
    assert found and found.group(3) is not None
    psnr, _, before, loss_before, loss_after, change, levels = found.groups()
    assert float(psnr) == pytest.approx(attack_psnr(inpainter, protected, mask), abs=0.006)
    assert float(before) == pytest.approx(attack_psnr(inpainter, image, mask), abs=0.006)
    assert float(loss_after) < float(loss_before) and float(change) < 0  # the optimiser's noise moved the fill
    assert float(change) == pytest.approx(100 * (float(loss_after) / float(loss_before) - 1), abs=0.2)
    saved = np.asarray(Image.open(protected)).astype(np.int16)
    assert int(levels) == np.abs(saved - pixels).max() <= 6

    # the target colour is the original's: inpainting the original against itself scores the unprotected fill
    assert main(["inpaint", str(image), "--mask", str(mask), "-o", str(tmp_path / "clean.png"), "--inpainter",
                 str(inpainter), "--original", str(image)]) == 0
    same = PRINTED.search(capsys.readouterr().out)
    assert same.group(1) == same.group(3) == before and float(same.group(6)) == 0 and same.group(7) == "0"


@pytest.mark.parametrize("case,pattern", [
    ("missing image", "cannot read image"),
    ("mask size", "is 30x20 but the image is 52x40"),
    ("original size", "--original '"),
    ("unknown inpainter", "no inpainter checkpoint 'nope'"),
    ("empty mask", "is empty: nothing to inpaint"),
    ("full mask", "the mask covers the whole image"),
    ("output is input", "is the input file"),
    ("output is original", "is the input file"),
    ("output exists", "pass --overwrite"),
    ("no format", "no file extension"),
])
def test_inpaint_bad_input_gives_one_line_error(tmp_path, files, capsys, case, pattern):
    image, mask, inpainter, _ = files
    original = tmp_path / "original.png"
    write_rgb(original, 40, 52, seed=1)
    out = tmp_path / "out.png"
    args = {"image": str(image), "--mask": str(mask), "-o": str(out), "--inpainter": str(inpainter),
            "--original": str(original)}
    if case == "missing image":
        args["image"] = str(tmp_path / "nope.png")
    elif case == "mask size":
        write_mask(tmp_path / "small.png", 20, 30, (0, 0, 5, 5))
        args["--mask"] = str(tmp_path / "small.png")
    elif case == "original size":
        write_rgb(original, 40, 50)
    elif case == "unknown inpainter":
        args["--inpainter"] = "nope"
    elif case in ("empty mask", "full mask"):
        Image.fromarray(np.full((40, 52), 0 if case == "empty mask" else 255, np.uint8)).save(tmp_path / "m.png")
        args["--mask"] = str(tmp_path / "m.png")
    elif case == "output is input":
        args["-o"] = str(image)
    elif case == "output is original":
        args["-o"] = str(original)
    elif case == "output exists":
        out.write_bytes(b"keep me")
    elif case == "no format":
        args["-o"] = str(tmp_path / "edited")
    inputs = {p: p.read_bytes() for p in (image, mask, original)}
    assert main(["inpaint", args.pop("image"), *[str(v) for item in args.items() for v in item]]) == 2
    assert pattern in one_line_error(capsys)
    assert all(p.read_bytes() == data for p, data in inputs.items())  # the inputs are never touched
    if case == "output exists":
        assert out.read_bytes() == b"keep me"
    elif case not in ("output is input", "output is original"):
        assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_target_colours_are_named():
    from generator.target import colour_name

    assert [colour_name(c) for c in torch.eye(3)] == ["red", "green", "blue"]
    with pytest.raises(ValueError, match="is not a target colour"):
        colour_name(torch.tensor([1.0, 1.0, 0.0]))


@pytest.mark.parametrize("name", ["mask-dilate-9", "mask-shift-8"])
def test_an_editors_mask_is_inpainted_as_that_mask_drawn_in_a_file(tmp_path, files, capsys, name):
    from trainer.evaluation.editor_masks import DRAWN, get_editor_mask

    image, mask, inpainter, _ = files
    drawn = get_editor_mask(name)(read_mask(mask)[None])[0, 0]
    assert not torch.equal(drawn, read_mask(mask)[0])
    drawn_file = tmp_path / "drawn.png"
    Image.fromarray((drawn.numpy() * 255).astype(np.uint8)).save(drawn_file)
    outs = [tmp_path / "by-option.png", tmp_path / "by-file.png"]
    said = []
    for region, out in zip([[str(mask), "--editor-mask", name], [str(drawn_file)]], outs):
        assert main(["inpaint", str(image), "--mask", *region, "-o", str(out), "--inpainter", str(inpainter)]) == 0
        said.append(capsys.readouterr().out)
    assert said[0].replace(f"the mask drawn {DRAWN[name]} ({name})", "the mask").replace(str(outs[0]), "") \
        == said[1].replace(str(outs[1]), "")
    assert np.array_equal(*(np.asarray(Image.open(out)) for out in outs))
