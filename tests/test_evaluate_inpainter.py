import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.commands import cli
from trainer.commands.evaluate_inpainter import telea_fill
from trainer.inpainting.inpainter import build_inpainter, save_inpainter

from .conftest import TINY


def write_smooth(path, h: int, w: int, seed: int) -> None:
    """A smooth colour ramp: easy for Telea, far from its own mean colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [np.clip(rng.uniform(0.1, 0.4) + rng.uniform(0.3, 0.6) * (x if c % 2 else y), 0, 1) for c in range(3)]
    Image.fromarray((np.stack(channels, -1) * 255).astype(np.uint8)).save(path)


@pytest.fixture
def setup(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_smooth(images / "a.png", 40, 48, seed=0)
    write_smooth(images / "b.png", 36, 36, seed=1)
    ckpt = save_inpainter(build_inpainter(TINY, seed=0).net, tmp_path / "tiny.safetensors")
    return ckpt, images


def rows(text: str) -> dict[str, list[float]]:
    """Markdown table rows of the first table: method -> numbers."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"-?[\d.]+", cells[1] or "x"):
            out[cells[0]] = [float(cells[1]), float(cells[2])]
    return out


def test_scores_the_inpainter_next_to_both_baselines(setup, capsys):
    ckpt, images = setup
    code = cli.main(["evaluate-inpainter", str(ckpt), "--images", str(images), "--size", "32",
                     "--masks-per-image", "2", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 samples: 2 images" in out
    table = rows(out)
    assert set(table) == {str(ckpt), "mean-colour fill", "OpenCV Telea (radius 3)"}
    for psnr, l1 in table.values():
        assert 0 < psnr < 100 and 0 < l1 < 1
    # on smooth ramps the classical method must beat the flat fill clearly
    assert table["OpenCV Telea (radius 3)"][0] > table["mean-colour fill"][0] + 3


def test_attack_adds_the_probe_table(setup, capsys):
    ckpt, images = setup
    code = cli.main(["evaluate-inpainter", str(ckpt), "--images", str(images), "--size", "32",
                     "--masks-per-image", "1", "--attack"])
    out = capsys.readouterr().out
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("| attack PSNR before"))
    values = out.splitlines()[out.splitlines().index(header) + 2].strip("| ").split("|")
    before, after, success, gain = (v.strip() for v in values)
    assert float(before) > 0 and float(after) > 0 and success.endswith("%") and float(gain) >= 0


def test_telea_keeps_known_pixels_and_fills_a_flat_image_flat():
    image = torch.full((1, 3, 24, 24), 0.4)
    image[..., :, :4] = torch.rand(1, 3, 24, 4)  # some detail far from the hole
    mask = torch.zeros(1, 1, 24, 24)
    mask[..., 10:16, 12:18] = 1
    filled = telea_fill(image, mask)
    assert torch.equal(filled * (1 - mask), image * (1 - mask))
    # Telea's weighted average dithers a flat area by one 8-bit level
    assert torch.allclose(filled[..., 10:16, 12:18], torch.full((1, 3, 6, 6), 0.4), atol=2.5 / 255)


def test_missing_opencv_skips_telea_with_a_note(setup, capsys, monkeypatch):
    ckpt, images = setup
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    code = cli.main(["evaluate-inpainter", str(ckpt), "--images", str(images), "--size", "32",
                     "--masks-per-image", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "OpenCV Telea" not in "".join(rows(out))
    assert "Telea baseline skipped: OpenCV is not installed" in out


@pytest.mark.parametrize("args, message", [
    (["no-such-inpainter"], "no inpainter checkpoint 'no-such-inpainter'"),
    (["{ckpt}", "--images", "{tmp}/missing"], "image folder '{tmp}/missing' does not exist"),
    (["{ckpt}", "--images", "{tmp}/images/a.png"], "--images '{tmp}/images/a.png' is not a folder"),
    (["{ckpt}", "--size", "4"], "--size must be >= 16"),
    (["{ckpt}", "--seed", "-1"], "--seed >= 0"),
    (["{tmp}/images/a.png"], "cannot read checkpoint"),
])
def test_bad_input_is_one_line_and_exit_code_2(setup, tmp_path, capsys, args, message):
    ckpt, _ = setup
    argv = [a.format(ckpt=ckpt, tmp=tmp_path) for a in args]
    code = cli.main(["evaluate-inpainter", *argv])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    message = message.format(ckpt=ckpt, tmp=tmp_path)
    assert len(lines) == 1 and lines[0].startswith("paintguard: error:") and message in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


def test_an_unreadable_image_is_skipped_and_the_others_scored(setup, capsys):
    ckpt, images = setup
    (images / "broken.png").write_bytes(b"not a png")
    code = cli.main(["evaluate-inpainter", str(ckpt), "--images", str(images), "--size", "32",
                     "--masks-per-image", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "2 samples: 2 images" in captured.out and "(1 unreadable skipped)" in captured.out
    assert str(ckpt) in rows(captured.out)
    broken = images / "broken.png"
    assert captured.err.strip() == (f"paintguard: error: cannot read image '{broken}': cannot identify image file "
                                    f"'{broken}'; skipped")
    (images / "a.png").write_bytes(b"")
    (images / "b.png").write_bytes(b"")
    assert cli.main(["evaluate-inpainter", str(ckpt), "--images", str(images), "--size", "32"]) == 2
    assert "none of the 3 images in" in capsys.readouterr().err


def test_running_out_of_memory_is_one_line(setup, capsys, monkeypatch):
    import trainer.commands.evaluate_inpainter as evaluate

    class Huge:
        def __init__(self, *args, **kwargs):
            raise MemoryError
    monkeypatch.setattr(evaluate, "FixedCropDataset", Huge)
    ckpt, images = setup
    assert cli.main(["evaluate-inpainter", str(ckpt), "--images", str(images), "--size", "100000"]) == 2
    assert capsys.readouterr().err.strip() == ("paintguard: error: out of memory at --size 100000; choose a smaller "
                                               "--size or --batch-size")
