"""Writing protected images so that the noise bound survives the file format."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generator.messages import warn_user

Tensor = torch.Tensor
LOSSLESS = {".png", ".tif", ".tiff", ".bmp"}


def quantize_within_bound(protected: Tensor, original: Tensor, eps: float) -> np.ndarray:
    """8-bit pixels nearest to ``protected`` that stay within ``eps`` of ``original`` once read back.

    Plain rounding can push a pixel half a level past the bound when the original
    is not on the 8-bit grid (16-bit sources), so each value is clamped to the
    8-bit levels inside [original - eps, original + eps]. (3,H,W) floats -> (H,W,3) uint8.
    """
    p = protected.detach().double().cpu().clamp(0, 1) * 255
    x = original.detach().double().cpu().clamp(0, 1) * 255
    slack = 1e-6  # float round-off of eps * 255
    lo = torch.ceil(x - eps * 255 - slack).clamp(0, 255)
    hi = torch.floor(x + eps * 255 + slack).clamp(0, 255)
    q = torch.minimum(torch.maximum(torch.round(p), lo), hi)
    return q.to(torch.uint8).permute(1, 2, 0).numpy()


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in the same folder, then rename it to ``path``.

    The rename is atomic, so an interrupted run never leaves a half-written output.
    """
    path = Path(path)
    tmp = partial_path(path)
    try:
        write(tmp)
        # as an ordinary new file's (0644 under the usual umask): safetensors writes 0600, unreadable to others
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None:  # not about a file (a writer's own error): as it came
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None  # the file asked for, not the temporary one
    finally:
        tmp.unlink(missing_ok=True)
    return path


NAME_MAX = 255  # bytes in one file name on the usual file systems (ext4, XFS, APFS, NTFS in UTF-16 units)


def partial_path(path: Path) -> Path:
    """``.NAME.partial.SUFFIX`` beside ``path``, its NAME cut so that a name the file system takes keeps a
    temporary name it takes too (the suffix stays: it tells Pillow the format)."""
    tail = f".partial{path.suffix}"
    head = path.name.encode()[:NAME_MAX - 1 - len(tail.encode())].decode(errors="ignore")
    return path.with_name(f".{head}{tail}")


def write_atomic(image: Image.Image, path: str | os.PathLike, **save_kwargs) -> Path:
    """Save a PIL image atomically (see ``atomic_write``), in the format its name's suffix says."""
    path = Path(path)
    # told here, from the name asked for: Pillow would name the temporary file's suffix (".partial")
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        given = f"unknown extension {path.suffix!r}" if path.suffix else "no extension"
        raise ValueError(f"'{path}': cannot tell the image format from the name ({given}); use .png")
    options = {"format": image_format, **save_kwargs}
    return atomic_write(path, lambda tmp: image.save(tmp, **options))


def to_uint8(image: Tensor) -> np.ndarray:
    """A (3,H,W)/(1,H,W)/(H,W) tensor in [0,1] as an HWC/HW uint8 array, each value rounded to the nearest level
    (what PIL and wandb.Image take)."""
    x = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    if x.dim() == 3:
        x = x.permute(1, 2, 0)
        if x.shape[-1] == 1:
            x = x[..., 0]
    return x.numpy()


def write_image(image: Tensor, path: str | os.PathLike) -> Path:
    """Save a (3,H,W) image in [0, 1] as 8-bit RGB, each value rounded to the nearest level, atomically."""
    return write_atomic(Image.fromarray(to_uint8(image)), path)


def check_creatable(out: Path, option: str = "--out") -> None:
    """Refuse an output path that cannot be created because a file stands where one of its folders must go."""
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"{option} '{out}' cannot be created: '{blocker}' is a file")


def check_folder_out(out: Path, what: str = "folder") -> None:
    """Refuse an ``--out`` folder (a ``what``) that cannot be made: a file stands at it or at one of its parents."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out '{out}' is a file, not a {what}")
    check_creatable(out)


def check_output_path(output: str | os.PathLike, inputs: list[str | os.PathLike], overwrite: bool) -> Path:
    """Refuse to write over an input, or over an existing file unless asked to."""
    out = Path(output)
    for src in inputs:
        if out.resolve() == Path(src).resolve():
            raise ValueError(f"output '{out}' is the input file; choose another path")
    if out.is_dir():
        raise ValueError(f"output '{out}' is a folder")
    if out.exists() and not overwrite:
        raise ValueError(f"output '{out}' exists; pass --overwrite to replace it")
    check_creatable(out, "output")  # a file where a folder must be: found before the work, not at the write
    if not out.parent.exists():
        raise ValueError(f"output folder '{out.parent}' does not exist")
    supported = LOSSLESS | {".jpg", ".jpeg", ".webp"}
    if out.suffix.lower() not in supported:
        others = ", ".join(sorted(supported - {".png"}))
        what = f"format '{out.suffix}'" if out.suffix else f"'{out}': no file extension to tell the format"
        raise ValueError(f"unsupported output {what}; use .png (or {others})")
    return out


def check_skip_existing(skip_existing: bool, overwrite: bool, folder: bool) -> None:
    """Refuse ``--skip-existing`` beside ``--overwrite``, or for one image (``folder`` false)."""
    if skip_existing and overwrite:
        raise ValueError("--skip-existing leaves the outputs that --overwrite replaces: give one of them")
    if skip_existing and not folder:
        raise ValueError("--skip-existing is for a folder (a single image's output is replaced with --overwrite)")


def check_unit_range(x: Tensor | np.ndarray, what: str) -> None:
    """Refuse values outside [0, 1] or NaN in ``x`` (named ``what`` in the message)."""
    # a 0..255 float image would otherwise be protected as almost-white, and NaN pass through, silently
    if x.size if isinstance(x, np.ndarray) else x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (lo >= 0 and hi <= 1):  # written so that NaN fails it
            raise ValueError(f"{what} values must lie in [0, 1], got [{lo:g}, {hi:g}]")


def save_protected(protected: Tensor, original: Tensor, path: str | os.PathLike, eps: float) -> Path:
    """Write a protected (3,H,W) image; lossless formats keep |saved - original| <= eps exactly."""
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    for x, what in ((protected, "protected"), (original, "original")):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] != 3 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"the {what} image must be a float tensor (3,H,W) in [0, 1], got {shape}")
        check_unit_range(x, f"the {what} image's")  # a NaN would be written black, far outside the bound
    if protected.shape != original.shape:
        raise ValueError(f"the protected image is {tuple(protected.shape)} but the original {tuple(original.shape)}")
    path = Path(path)
    if path.suffix.lower() not in LOSSLESS:
        warn_user(f"'{path.name}': lossy formats change pixels after the bound is applied and weaken the "
                  "protection; prefer PNG")
    return write_atomic(Image.fromarray(quantize_within_bound(protected, original, eps)), path)
