"""One image for ``paintguard protect``: read and check it with its masks, write it within the bound, report it."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from generator.io import bomb_error, not_regular, read_image, read_mask
from generator.messages import counted
from generator.protector import FULL_MASK
from generator.save import LOSSLESS, check_output_path, quantize_within_bound, write_atomic

FORMATS = {"png": ".png", "webp": ".webp", "jpg": ".jpg", "tif": ".tif"}  # --format -> the suffix written
INVERTED = 0.75  # a mask covering more than this is more likely drawn the wrong way round than meant
MIN_SIDE = 16  # below this the 17x17 ring around the mask and the U-Net's 16x downsampling do not fit
# WebP is written losslessly, so it keeps the bound like PNG; JPEG re-quantises every pixel, and at full chroma
# resolution (4:4:4) moves them less: on three 512 px photos the mean change 1.7-2.0 levels against 2.2-3.4, the
# largest 17-18 against 28-63, for files 1.4 times the size of 4:2:0's
JPEG = {"quality": 95, "subsampling": 0}
SAVE_OPTIONS = {".webp": {"lossless": True, "exact": True}, ".jpg": JPEG, ".jpeg": JPEG}


@dataclass
class Item:
    """One image to protect, as it goes through reading, protection and writing."""

    image_path: Path
    mask_paths: list[Path]
    output: Path
    image: torch.Tensor | None = None  # (3,H,W) in [0,1]
    mask: torch.Tensor | None = None  # (1,H,W) in {0,1}
    icc: bytes | None = None
    protected: torch.Tensor | None = None
    error: str | None = None
    empty: bool = False


def peek(path: Path) -> tuple[tuple[int, int], bytes | None] | None:
    """(upright (W, H), RGB ICC profile) from the header alone; None if unreadable (read_image says why)."""
    if not_regular(path) is not None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                # EXIF orientations 5-8 turn the image by 90 degrees
                turned = img.getexif().get(0x0112) in (5, 6, 7, 8)
                icc = img.info.get("icc_profile")
    except Image.DecompressionBombError:
        raise bomb_error(path) from None
    except Exception:
        return None
    # a colour profile only fits the RGB output if it describes RGB (not grey or CMYK sources)
    return ((h, w) if turned else (w, h)), (icc if icc and icc[16:20] == b"RGB " else None)


def load(item: Item, max_pixels: float, overwrite: bool) -> Item:
    """Read and check one image and its masks (union); raises ValueError/OSError with a one-line reason."""
    check_output_path(item.output, [item.image_path, *item.mask_paths], overwrite)
    header = peek(item.image_path)
    if header is not None:
        (w, h), item.icc = header
        if w * h > max_pixels:
            raise ValueError(f"image '{item.image_path}' is {w}x{h} = {w * h / 1e6:.3g} MP, above --max-pixels "
                             f"{max_pixels / 1e6:g} MP")
        if min(w, h) < MIN_SIDE:
            raise ValueError(f"image '{item.image_path}' is {w}x{h}; at least {MIN_SIDE} px on each side are needed")
    item.image = read_image(item.image_path)
    size = tuple(item.image.shape[-2:])
    item.mask = torch.stack([read_mask(p, size=size) for p in item.mask_paths]).amax(0)
    if item.mask.all():
        raise ValueError(f"'{item.image_path}': {FULL_MASK}; leave some of the image unmasked")
    item.empty = not item.mask.any()
    covered = float(item.mask.mean())
    if covered > INVERTED:  # black strokes on white mark everything but the strokes
        say("warning", f"the mask of '{item.image_path}' covers {covered:.0%} of the image; non-zero pixels are "
                       "the region to protect: is it inverted?")
    return item


def write(item: Item, eps: float) -> Path:
    """Write ``item.protected`` (or the image itself for an empty mask), rounded within the bound, atomically."""
    protected = item.image if item.empty else item.protected
    pixels = quantize_within_bound(protected, item.image, eps)
    options = dict(SAVE_OPTIONS.get(item.output.suffix.lower(), {}))
    if item.icc:
        options["icc_profile"] = item.icc
    return write_atomic(Image.fromarray(pixels), item.output, **options)


def say(kind: str, message: str) -> None:
    """One line on stderr that does not break a progress bar."""
    tqdm.write(f"paintguard: {kind}: {message}", file=sys.stderr)


def warn_empty(item: Item) -> None:
    say("warning", f"the mask of '{item.image_path}' is empty; wrote the image unchanged")


def warn_lossy(suffix: str) -> None:
    if suffix.lower() not in LOSSLESS | {".webp"}:
        say("warning", f"{suffix} is lossy: compression changes pixels after the bound is applied and weakens the "
                       "protection; prefer PNG or WebP (written losslessly)")


def summary(written: int, unchanged: int, failed: int, seconds: float, processes: int) -> str:
    rate = written / seconds if seconds > 0 else 0.0
    extra = f" ({unchanged} unchanged: empty mask)" if unchanged else ""
    procs = f" on {processes} processes" if processes > 1 else ""
    images = counted(written, "image")
    return f"paintguard protect: {images} written{extra}, {failed} failed, {seconds:.1f} s ({rate:.2f} images/s){procs}"
