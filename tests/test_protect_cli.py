"""``paintguard protect``: one image, a folder, several processes, and every kind of bad input."""

import importlib
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from generator.io import read_image
from generator.folder_scan import OUTPUT_MARKER
from trainer.commands.cli import main
from trainer.inpainting.inpainter import save_inpainter

from .conftest import one_line_error, write_mask, write_rgb

EPS = 0.025


def protect(*args) -> int:
    return main(["protect", *map(str, args)])


def bound_kept(out, src) -> float:
    """The largest |saved - original| after reading both back; fails the test if the bound is broken."""
    moved = (read_image(out).double() - read_image(src).double()).abs().max().item()
    assert moved <= EPS + 1e-9
    return moved


def test_single_image(tmp_path, pair, generator_path, capsys):
    image, mask = pair
    out = tmp_path / "out.png"
    assert protect(image, "--mask", mask, "-o", out, "--checkpoint", generator_path) == 0
    assert bound_kept(out, image) > 5 / 255  # the noise is really there
    printed = capsys.readouterr().out
    assert "1 image written, 0 failed" in printed and f"wrote {out}" in printed


def test_bfloat16_generator_and_optimiser(tmp_path, pair, generator_path, tiny_inpainter, capsys):
    image, mask = pair
    out, full = tmp_path / "half.png", tmp_path / "full.png"
    assert protect(image, "--mask", mask, "-o", out, "--checkpoint", generator_path, "--dtype", "bfloat16") == 0
    assert protect(image, "--mask", mask, "-o", full, "--checkpoint", generator_path) == 0
    assert bound_kept(out, image) > 5 / 255
    # the same protection but where the noise crosses zero (there bfloat16 may flip its sign)
    differs = (read_image(out) - read_image(full)).abs() > 1.5 / 255
    assert differs.float().mean() < 0.05
    src = tmp_path / "in"  # a folder runs the bfloat16 generator inside Lightning's predict loop
    make_folder(src, [(24, 24), (20, 28)])
    assert protect(src, "-o", tmp_path / "folder", "--checkpoint", generator_path, "--dtype", "bfloat16") == 0
    bound_kept(tmp_path / "folder" / "im0.png", src / "im0.png")
    inpainter = save_inpainter(tiny_inpainter, tmp_path / "inp.safetensors")  # the optimiser in bfloat16 too
    assert protect(image, "--mask", mask, "-o", tmp_path / "it.png", "--method", "iterative", "--steps", "1",
                   "--inpainter", inpainter, "--dtype", "bfloat16") == 0
    bound_kept(tmp_path / "it.png", image)
    capsys.readouterr()
    for args, pattern in [(["--dtype", "bfloat16", "--backend", "onnx"], "needs the torch backend"),
                          (["--dtype", "float16"], "invalid choice")]:
        bad = tmp_path / "bad.png"
        assert protect(image, "--mask", mask, "-o", bad, "--checkpoint", generator_path, *args) == 2
        one_line_error(capsys, pattern)
        assert not bad.exists()


def test_dtype_auto_and_the_one_line_warning(tmp_path, pair, generator_path, native, capsys, printed_warnings):
    """auto runs bfloat16 where the CPU has it, else float32; asking for bfloat16 elsewhere warns on one line."""
    image, mask = pair
    outs = {dtype: tmp_path / f"{dtype}.png" for dtype in ("float32", "bfloat16", "auto")}
    importlib.import_module("generator.protect_cli")  # Lightning sets its own warning format on import
    before = warnings.formatwarning
    for dtype, out in outs.items():
        assert protect(image, "--mask", mask, "-o", out, "--checkpoint", generator_path, "--dtype", dtype) == 0
    err = capsys.readouterr().err.strip()
    if native:
        assert err == ""
    else:  # asking for bfloat16 warns on one line, no source excerpt; auto chose float32 and does not
        assert err == ("paintguard: warning: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX): bfloat16 "
                       "runs emulated, 2 to 44 times as long as float32 on the instruction sets measured; use "
                       "float32, or 'auto' to pick")
    assert warnings.formatwarning is before  # the one-line format ends with the command
    chosen = outs["bfloat16" if native else "float32"]
    if native:  # through onnxruntime, which runs the float32 export, auto is float32
        assert protect(image, "--mask", mask, "-o", tmp_path / "onnx.png", "--checkpoint", generator_path,
                       "--dtype", "auto", "--backend", "onnx") == 0
    assert torch.equal(read_image(outs["auto"]), read_image(chosen))
    # the two precisions differ, so the comparison above tells which one auto ran
    assert not torch.equal(read_image(outs["float32"]), read_image(outs["bfloat16"]))


def test_formats_icc_and_metadata(tmp_path, generator_path, capsys):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    exif[0x010F] = "Camera maker"
    src, mask = tmp_path / "in.jpg", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 64, 3), np.uint8)).save(
        src, icc_profile=srgb, exif=exif, quality=95)
    write_mask(mask, 64, 40, (5, 5, 20, 20))  # the mask is drawn on the upright image
    for suffix in (".png", ".webp", ".jpg"):
        out = tmp_path / f"out{suffix}"
        assert protect(src, "--mask", mask, "-o", out, "--checkpoint", generator_path) == 0
        with Image.open(out) as img:
            assert img.size == (40, 64)  # orientation applied to the pixels
            assert img.info.get("icc_profile") == srgb  # an RGB profile is kept
            assert 0x0112 not in img.getexif() and 0x010F not in img.getexif()  # EXIF dropped
        err = capsys.readouterr().err
        assert ("lossy" in err) == (suffix == ".jpg")
        if suffix != ".jpg":
            bound_kept(out, src)  # PNG and lossless WebP keep the bound exactly


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_grey_rgba_palette_and_16bit_are_converted(tmp_path, generator_path, mode):
    pixels = np.random.default_rng(1).integers(0, 256, (40, 52, 3), np.uint8)
    img = Image.fromarray(pixels).convert(mode) if mode != "I;16" else \
        Image.fromarray(np.random.default_rng(1).integers(0, 65536, (40, 52), np.uint16))
    src = tmp_path / "src.png"
    img.save(src)
    write_mask(tmp_path / "m.png", 40, 52, (0, 0, 10, 10))
    out = tmp_path / "out.png"
    assert protect(src, "--mask", tmp_path / "m.png", "-o", out, "--checkpoint", generator_path) == 0
    assert Image.open(out).mode == "RGB"
    assert bound_kept(out, src) > 0


@pytest.mark.parametrize("drawn", [False, True], ids=["zeros", "black-on-transparent"])
def test_empty_mask_warns_and_writes_the_image_unchanged(tmp_path, pair, generator_path, capsys, drawn,
                                                       printed_warnings):
    image, _ = pair
    empty = np.zeros((40, 52, 4), np.uint8)
    empty[5:15, 5:15, 3] = 255 * drawn  # opaque black strokes: a common way to draw a mask, which marks nothing
    Image.fromarray(empty).save(tmp_path / "empty.png")
    out = tmp_path / "out.png"
    assert protect(image, "--mask", tmp_path / "empty.png", "-o", out, "--checkpoint", generator_path) == 0
    err = capsys.readouterr().err
    assert "is empty; wrote the image unchanged" in err
    assert ("paintguard: warning: mask '" in err and "is drawn in black on a transparent background" in err) == drawn
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(image)))


BAD = {
    "missing image": "cannot read image",
    "corrupt image": "cannot read image",
    "truncated image": "cannot read image",
    "mask size": "is 30x20 but the image is 52x40",
    "full mask": "covers the whole image",
    "tiny image": "at least 16 px on each side",
    "too many pixels": "above --max-pixels",
    "infinite max pixels": "--max-pixels a number > 0 (and below 1e18)",
    "output is input": "is the input file",
    "output exists": "pass --overwrite",
    "unknown checkpoint": "no generator checkpoint 'nope'",
    "inpainter as generator": "expected a checkpoint of kind 'generator'",
    "no mask option": "--mask is required",
    "steps with generator": "--steps must be >= 0 and only applies",
    "inpainter list": "--inpainter takes one inpainter, got 'lama-tiny,lama-tiny-ft'; paintguard optimize attacks",
    "no such device": "argument --device: 'nonsense' cannot be used here",
    "gif output": "unsupported output format '.gif'; use .png (or .bmp, ",
    "no extension": "unsupported output '{tmp}/out': no file extension to tell the format; use .png",
    **({} if torch.cuda.is_available() else {"no CUDA": "argument --device: 'cuda' cannot be used here"}),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_error_and_nothing_written(tmp_path, pair, generator_path, capsys, case, tiny_inpainter):
    image, mask = pair
    out = tmp_path / "out.png"
    args = {"image": image, "--mask": mask, "-o": out, "--checkpoint": generator_path}
    extra = []
    if case == "missing image":
        args["image"] = tmp_path / "nope.png"
    elif case == "corrupt image":
        args["image"] = tmp_path / "bad.png"
        args["image"].write_bytes(b"not an image at all")
    elif case == "truncated image":
        args["image"] = tmp_path / "cut.png"
        args["image"].write_bytes(image.read_bytes()[:200])
    elif case == "mask size":
        write_mask(tmp_path / "small.png", 20, 30, (0, 0, 5, 5))
        args["--mask"] = tmp_path / "small.png"
    elif case == "full mask":
        write_mask(tmp_path / "full.png", 40, 52, (0, 0, 40, 52))
        args["--mask"] = tmp_path / "full.png"
    elif case == "tiny image":
        write_rgb(tmp_path / "tiny.png", 12, 40)
        write_mask(tmp_path / "tiny_mask.png", 12, 40, (0, 0, 5, 5))
        args["image"], args["--mask"] = tmp_path / "tiny.png", tmp_path / "tiny_mask.png"
    elif case == "too many pixels":
        extra = ["--max-pixels", "2000"]  # 52 x 40 = 2080
    elif case == "infinite max pixels":
        extra = ["--max-pixels", "inf"]  # was a traceback: int(inf)
    elif case == "output is input":
        args["-o"] = image
    elif case == "output exists":
        out.write_bytes(b"keep me")
    elif case == "unknown checkpoint":
        args["--checkpoint"] = "nope"
    elif case == "inpainter as generator":
        args["--checkpoint"] = save_inpainter(tiny_inpainter, tmp_path / "inp.safetensors")
    elif case == "no mask option":
        del args["--mask"]
    elif case == "steps with generator":
        extra = ["--steps", "3"]
    elif case == "inpainter list":
        extra = ["--method", "hybrid", "--inpainter", "lama-tiny,lama-tiny-ft"]
    elif case in ("gif output", "no extension"):
        args["-o"] = out.with_suffix(".gif" if case == "gif output" else "")
    elif case in ("no such device", "no CUDA"):
        extra = ["--device", "nonsense" if case == "no such device" else "cuda"]
    before = image.read_bytes()
    argv = [args.pop("image")] + [v for kv in args.items() for v in kv] + extra
    assert protect(*argv) == 2
    one_line_error(capsys, BAD[case].format(tmp=tmp_path))
    assert image.read_bytes() == before
    if case == "output exists":
        assert out.read_bytes() == b"keep me"
        assert protect(*argv, "--overwrite") == 0 and out.read_bytes() != b"keep me"
    elif case != "output is input":
        assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_interrupted_write_leaves_no_file(tmp_path, pair, generator_path, monkeypatch):
    image, mask = pair
    out = tmp_path / "out.png"
    real_save = Image.Image.save

    def save_half_then_interrupt(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        with open(fp, "r+b") as f:
            f.truncate(100)  # a half-written file on disk...
        raise KeyboardInterrupt  # ...when the user presses Ctrl-C

    monkeypatch.setattr(Image.Image, "save", save_half_then_interrupt)
    assert protect(image, "--mask", mask, "-o", out, "--checkpoint", generator_path) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors", "img.png", "img_mask.png"]


def make_folder(root, sizes):
    """NAME.png + NAME_mask.png pairs of the given (H, W) sizes, some in a sub-folder."""
    for i, (h, w) in enumerate(sizes):
        folder = root / "sub" if i % 3 == 2 else root
        folder.mkdir(parents=True, exist_ok=True)
        write_rgb(folder / f"im{i}.png", h, w, seed=i)
        write_mask(folder / f"im{i}_mask.png", h, w, (2, 3, h // 2, w // 2))
    return sorted(p for p in root.rglob("im?.png"))


def test_folder_mode_reports_failures_and_goes_on(tmp_path, generator_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    good = make_folder(src, [(40, 52), (40, 52), (33, 20), (40, 52), (64, 30)])
    (src / "corrupt.png").write_bytes(b"garbage")
    (src / "corrupt_mask.png").write_bytes(b"garbage")
    write_rgb(src / "nomask.png", 20, 20)
    write_rgb(src / "wrongsize.png", 20, 20)
    write_mask(src / "wrongsize_mask.png", 24, 20, (0, 0, 4, 4))
    write_rgb(src / "empty.png", 20, 20)
    write_mask(src / "empty_mask.png", 20, 20, (0, 0, 0, 0))
    dst.mkdir()
    (dst / "im1.png").write_bytes(b"old output")  # not replaced without --overwrite

    assert protect(src, "-o", dst, "--checkpoint", generator_path, "--batch-size", "2") == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("paintguard: error:")]
    assert len(errors) == 4, captured.err
    for pattern in ("corrupt.png", "no mask for", "is 20x24 but the image is 20x20", "pass --overwrite"):
        assert sum(pattern in line for line in errors) == 1, (pattern, errors)
    assert "empty.png' is empty; wrote the image unchanged" in captured.err
    assert "5 images written (1 unchanged: empty mask), 4 failed" in captured.out
    assert (dst / "im1.png").read_bytes() == b"old output"
    for path in good:
        if path.name != "im1.png":
            bound_kept(dst / path.relative_to(src), path)
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "empty.png")), np.asarray(Image.open(src / "empty.png")))


def test_folder_reports_what_it_cannot_pair_and_makes_nothing_it_cannot_fill(tmp_path, generator_path, capsys):
    """A link to nothing is a failed image and a mask without its image a warning, each one line naming the file;
    no progress bar where stderr is not a terminal; an output that is a file, or a Lightning setting it refuses,
    is one line before any folder is made."""
    src, dst = tmp_path / "in", tmp_path / "out"
    make_folder(src, [(20, 24)])
    write_mask(src / "orphan_mask.png", 20, 24, (0, 0, 4, 4))
    (src / "gone.png").symlink_to(tmp_path / "nothing.png")
    write_mask(src / "gone_mask.png", 20, 24, (0, 0, 4, 4))
    assert protect(src, "-o", dst, "--checkpoint", generator_path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "\r" not in err and "img/s" not in err, err
    assert "paintguard: warning: mask '" in err and "orphan_mask.png' has no image beside it" in err
    assert "paintguard: error: cannot read image '" in err and "gone.png'" in err
    assert sorted(p.name for p in dst.iterdir()) == [OUTPUT_MARKER, "im0.png"]

    (src / "orphan_mask.png").unlink()
    (tmp_path / "file.png").write_bytes(b"keep me")
    assert protect(src, "-o", tmp_path / "file.png", "--checkpoint", generator_path) == 2
    one_line_error(capsys, "file.png' is a file; a folder's outputs go to a folder")
    assert (tmp_path / "file.png").read_bytes() == b"keep me"
    assert protect(src, "-o", tmp_path / "new", "--checkpoint", generator_path, "--strategy", "nonsense") == 2
    one_line_error(capsys, "invalid strategy name")
    assert not (tmp_path / "new").exists()


def test_folder_batches_match_single_images_and_mask_suffix(tmp_path, generator_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        write_rgb(src / f"a{i}.png", 40, 52, seed=i)
        write_mask(src / f"a{i}.hole.png", 40, 52, (5, 5, 20, 20 + i))
    assert protect(src, "-o", tmp_path / "b1", "--checkpoint", generator_path, "--mask-suffix", ".hole") == 0
    assert protect(src, "-o", tmp_path / "b3", "--checkpoint", generator_path, "--mask-suffix", ".hole",
                   "--batch-size", "3", "--format", "webp") == 0
    assert "3 images written, 0 failed" in capsys.readouterr().out
    for i in range(3):
        single = np.asarray(Image.open(tmp_path / "b1" / f"a{i}.png")).astype(int)
        batched = np.asarray(Image.open(tmp_path / "b3" / f"a{i}.webp")).astype(int)
        assert np.abs(single - batched).max() <= 1  # same noise; float rounding may flip a level


def test_folder_output_inside_input_and_same_folder(tmp_path, generator_path, capsys):
    src = tmp_path / "in"
    make_folder(src, [(20, 20), (20, 24)])
    assert protect(src, "-o", src, "--checkpoint", generator_path) == 2
    one_line_error(capsys, "is the input folder")
    assert protect(src, "--mask", src / "a_mask.png", "-o", tmp_path / "o", "--checkpoint", generator_path) == 2
    one_line_error(capsys, "--mask is for one image; a folder's masks are NAME_mask*.png beside each image")
    assert protect(src, "-o", src / "protected", "--checkpoint", generator_path) == 0
    # a second run does not take the first run's outputs for inputs
    assert protect(src, "-o", src / "protected", "--checkpoint", generator_path, "--overwrite") == 0
    assert "2 images written, 0 failed" in capsys.readouterr().out.splitlines()[-1]


def test_iterative_and_hybrid_methods(tmp_path, pair, generator_path, tiny_inpainter, capsys):
    image, mask = pair
    inpainter = save_inpainter(tiny_inpainter, tmp_path / "inp.safetensors")
    out = tmp_path / "it.png"
    # the optimiser alone loads no generator: a checkpoint that does not exist is not read, and said to be unused
    assert protect(image, "--mask", mask, "-o", out, "--checkpoint", tmp_path / "none.safetensors",
                   "--method", "iterative", "--inpainter", inpainter, "--steps", "1") == 0
    assert capsys.readouterr().err == ("paintguard: warning: --checkpoint is not used by --method iterative (the "
                                       "optimiser alone loads no generator)\n")
    bound_kept(out, image)
    assert protect(image, "--mask", mask, "-o", out, "--method", "iterative", "--steps", "0") == 2
    assert capsys.readouterr().err == "paintguard: error: the 'iterative' method needs --steps >= 1\n"
    assert protect(image, "--mask", mask, "-o", tmp_path / "g.png", "--checkpoint", generator_path,
                   "--inpainter", inpainter) == 0
    assert "paintguard: warning: --inpainter is not used by --method generator" in capsys.readouterr().err
    src = tmp_path / "in"  # folder mode runs the optimiser inside Lightning's predict loop
    make_folder(src, [(24, 24)])
    assert protect(src, "-o", tmp_path / "hy", "--checkpoint", generator_path, "--method", "hybrid",
                   "--inpainter", inpainter, "--steps", "1") == 0
    bound_kept(tmp_path / "hy" / "im0.png", src / "im0.png")


def test_two_processes_write_every_image_exactly_once(tmp_path, generator_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    images = make_folder(src, [(24, 24), (24, 24), (20, 28), (32, 16), (24, 24)])
    write_mask(src / "lost_mask.png", 24, 24, (0, 0, 4, 4))
    env = {**os.environ, "PL_TORCH_DISTRIBUTED_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}

    def protect_on_two_processes(out, *options) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "trainer.commands.cli", "protect", str(src), "-o", str(out),
                               "--checkpoint", str(generator_path), "--devices", "2", "--strategy", "ddp", *options],
                              capture_output=True, text=True, timeout=300, env=env,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    proc = protect_on_two_processes(dst)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the counts add up to the number of images and both processes wrote some: nothing twice, nothing missed
    assert "5 images written, 0 failed" in proc.stdout and "on 2 processes" in proc.stdout, proc.stdout
    assert proc.stderr.count("lost_mask.png' has no image beside it") == 1, proc.stderr[-2000:]  # not once a process
    per_process = proc.stdout.split("written per process: ")[1].split(")")[0]
    counts = [int(c) for c in per_process.split(", ")]
    assert len(counts) == 2 and min(counts) > 0 and sum(counts) == 5
    outputs = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file() and p.name != OUTPUT_MARKER)
    assert outputs == sorted(p.relative_to(src) for p in images)
    for path in images:
        bound_kept(dst / path.relative_to(src), path)
    # the warning for a lossy format is a run's too
    proc = protect_on_two_processes(tmp_path / "jpg", "--format", "jpg")
    assert proc.returncode == 0 and "5 images written" in proc.stdout, proc.stderr[-2000:]
    assert proc.stderr.count(".jpg is lossy") == 1, proc.stderr[-2000:]


def test_registered_in_the_dispatcher(capsys):
    assert main(["--help"]) == 0
    assert "protect " in capsys.readouterr().out


def test_every_process_gets_a_batch_even_with_fewer_images_than_processes(tmp_path):
    from types import SimpleNamespace

    from generator.protect_folder import FolderData, Item

    data = FolderData([[Item(tmp_path / "a.png", [], tmp_path / "o.png")]], 1e6, False, 0)
    shares = []
    for rank in range(3):
        data.trainer = SimpleNamespace(global_rank=rank, world_size=3)
        shares.append(list(data.predict_dataloader()))
    assert [len(s) for s in shares] == [1, 1, 1]  # Lightning stops on a process whose loader is empty
    assert [len(batch) for s in shares for batch in s] == [1, 0, 0]
