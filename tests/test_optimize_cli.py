import subprocess
import sys
from contextlib import nullcontext

import numpy as np
import pytest
from PIL import Image

from trainer.commands.cli import main

from .conftest import one_line_error, write_mask
from .test_bad_files import bomb_png


def test_optimize_writes_a_bounded_png_and_prints_losses(tmp_path, files, capsys):
    image, mask, inpainter, pixels = files
    out = tmp_path / "out.png"
    assert main(["optimize", str(image), str(mask), "-o", str(out), "--inpainter", str(inpainter),
                 "--steps", "3"]) == 0
    printed = capsys.readouterr().out
    assert "none" in printed and "final" in printed and "attack PSNR" in printed
    back = np.asarray(Image.open(out)).astype(np.int16)
    assert back.shape == pixels.shape
    assert np.abs(back - pixels).max() <= 6  # 0.025 * 255 = 6.375 levels
    assert np.abs(back - pixels).max() > 0  # the noise is really there
    # the inpainter's convolutions in bfloat16: other noise, the same bound
    half = tmp_path / "half.png"
    assert main(["optimize", str(image), str(mask), "-o", str(half), "--inpainter", str(inpainter),
                 "--steps", "3", "--dtype", "bfloat16"]) == 0
    other = np.asarray(Image.open(half)).astype(np.int16)
    assert np.abs(other - pixels).max() <= 6 and not np.array_equal(other, back)


def test_optimize_dtype_auto(tmp_path, files, native, capsys):
    """auto: bfloat16 where the CPU has it, float32 elsewhere; bfloat16 asked for where it is emulated warns."""
    image, mask, inpainter, _ = files
    outs = {dtype: tmp_path / f"{dtype}.png" for dtype in ("float32", "bfloat16", "auto")}
    with nullcontext() if native else pytest.warns(UserWarning, match="no bfloat16 instructions"):
        for dtype, out in outs.items():
            assert main(["optimize", str(image), str(mask), "-o", str(out), "--inpainter", str(inpainter),
                         "--steps", "2", "--dtype", dtype]) == 0
    read = {dtype: np.asarray(Image.open(out)) for dtype, out in outs.items()}
    assert np.array_equal(read["auto"], read["bfloat16" if native else "float32"])
    assert not np.array_equal(read["float32"], read["bfloat16"])  # so the line above tells which one auto ran


@pytest.mark.parametrize("case,pattern", [
    ("missing image", "cannot read image"),
    ("bomb", "exceeds Pillow's decompression-bomb limit"),  # protect's wording
    ("mask size", "is 30x20 but the image is 52x40"),
    ("wrong keys", "do not fit the architecture"),
    ("unknown inpainter", "no inpainter checkpoint 'nope'"),
    ("empty mask", "is empty"),
    ("full mask", "the mask covers the whole image"),
    ("no such device", "argument --device: 'nonsense' cannot be used here"),
    ("output is input", "is the input file"),
    ("output exists", "pass --overwrite"),
    ("no steps", "--steps must be >= 1"),  # it wrote the optimiser's random start alone
])
def test_optimize_bad_input_gives_one_line_error(tmp_path, files, capsys, case, pattern, tiny_inpainter):
    image, mask, inpainter, _ = files
    out = tmp_path / "out.png"
    args = {"image": str(image), "mask": str(mask), "-o": str(out), "--inpainter": str(inpainter)}
    if case == "missing image":
        args["image"] = str(tmp_path / "nope.png")
    elif case == "bomb":
        (tmp_path / "bomb.png").write_bytes(bomb_png())
        args["image"] = str(tmp_path / "bomb.png")
    elif case == "mask size":
        write_mask(tmp_path / "small.png", 20, 30, (0, 0, 5, 5))
        args["mask"] = str(tmp_path / "small.png")
    elif case == "wrong keys":
        state = {k: v for k, v in tiny_inpainter.net.state_dict().items() if "model.1." not in k}
        from generator import checkpoint
        checkpoint.save(state, tmp_path / "bad.safetensors", "inpainter",
                        {"architecture": "ffc_resnet", **tiny_inpainter.config.to_dict()})
        args["--inpainter"] = str(tmp_path / "bad.safetensors")
    elif case == "unknown inpainter":
        args["--inpainter"] = "nope"
    elif case == "empty mask":
        Image.fromarray(np.zeros((40, 52), np.uint8)).save(tmp_path / "empty.png")
        args["mask"] = str(tmp_path / "empty.png")
    elif case == "full mask":
        Image.fromarray(np.full((40, 52), 255, np.uint8)).save(tmp_path / "full.png")
        args["mask"] = str(tmp_path / "full.png")
    elif case == "output is input":
        args["-o"] = str(image)
    elif case == "output exists":
        out.write_bytes(b"keep me")
    before = image.read_bytes()
    argv = ["optimize", args["image"], args["mask"], "-o", args["-o"], "--inpainter", args["--inpainter"],
            "--steps", "0" if case == "no steps" else "1",
            *(["--device", "nonsense"] if case == "no such device" else [])]
    assert main(argv) == 2
    assert pattern in one_line_error(capsys)
    assert image.read_bytes() == before  # the input is never touched
    if case == "output exists":
        assert out.read_bytes() == b"keep me"
    elif case != "output is input":
        assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainer.commands.cli", "optimize", str(tmp_path / "a.png"),
                           str(tmp_path / "b.png"), "-o", str(tmp_path / "c.png")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "cannot read image" in proc.stderr
