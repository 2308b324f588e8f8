"""Reading images and masks from disk into PaintGuard's tensor conventions.

Images are float32 ``(3, H, W)`` tensors in ``[0, 1]``; masks are float32
``(1, H, W)`` tensors in ``{0, 1}`` where 1 marks the region to protect (LaMa's
"hole"). Every read applies the EXIF orientation, so pixels match what an image
viewer shows, and every failure surfaces as one ``ImageReadError`` line.
"""

from __future__ import annotations

import os
from glob import escape as glob_escape
from pathlib import Path

import kornia
import numpy as np
import torch
from PIL import Image, ImageOps

from generator.messages import one_line, warn_user

PathLike = str | os.PathLike

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")  # what folders are scanned for

# Modes holding more than 8 bits per sample; PIL's own convert("RGB") would
# clip them to 255 instead of rescaling.
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# Greyscale modes whose raw samples can be tested for non-zero directly.
_GREY_MODES = ("1", "L") + _HIGH_BIT_MODES


NAN_MASK = "holds NaN values; give 1 where protected and 0 elsewhere"


class ImageReadError(ValueError):
    """An image or mask file that is missing, unreadable, corrupt or of the wrong size."""


def bomb_error(path: PathLike) -> ImageReadError:
    """The one line for an image above Pillow's decompression-bomb limit, whichever read finds it."""
    return ImageReadError(f"image '{os.fspath(path)}' exceeds Pillow's decompression-bomb limit")


ANIMATED = ("GIF", "PNG", "WEBP", "TIFF")  # formats whose extra frames are an animation (a TIFF's: its pages)


def not_regular(path: PathLike) -> str | None:
    """Why ``path`` is no file to read, when it exists but is a folder, a pipe or a device (reading a pipe waits
    for a writer for ever); None otherwise, a missing file included (opening it says so)."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.exists(path) or os.path.isfile(path):
        return None
    return "it is a folder" if os.path.isdir(path) else "not a regular file (a pipe, socket or device)"


def _open(path: PathLike, what: str = "image") -> Image.Image:
    """Fully decode ``path`` (an ``image`` or a ``mask``, as errors say) in its own mode, upright per its EXIF
    orientation."""
    if not isinstance(path, (str, os.PathLike)):  # Python's own words name os.PathLike and bytes
        raise TypeError(f"expected the {what}'s file path, got {type(path).__name__}; Protector.protect takes "
                        "PIL images, arrays and tensors as they are")
    if (reason := not_regular(path)) is not None:
        raise ImageReadError(f"cannot read {what} '{os.fspath(path)}': {reason}")
    try:
        with Image.open(path) as img:
            # an animation's other frames are never read (a phone's MPO JPEG holds previews, not frames: no word)
            frames = img.n_frames if getattr(img, "is_animated", False) and img.format in ANIMATED else 1
            kind = "a document of {} pages" if img.format == "TIFF" else "an animation of {} frames"
            # exif_transpose returns a new image (a copy when nothing to do);
            # load() forces the whole decode so truncated files fail here.
            img = ImageOps.exif_transpose(img)
            img.load()
    except Image.DecompressionBombError:
        raise bomb_error(path) from None
    except Exception as err:  # PIL decoders raise OSError, SyntaxError, struct.error, ...
        reason = one_line(getattr(err, "strerror", None) or err)
        raise ImageReadError(f"cannot read {what} '{os.fspath(path)}': {reason}") from None
    if frames > 1:
        warn_user(f"{what} '{os.fspath(path)}' is {kind.format(frames)}; only the first is read")
    return img


def _high_bit_to_float(img: Image.Image, what: str = "the image") -> np.ndarray:
    """Samples of a >8-bit greyscale image as float32 ``(H, W)`` in [0, 1].

    Integer modes are read as 16-bit (value / 65535); float ``F`` images are
    taken to already lie in [0, 1], the usual convention for float TIFFs.
    Samples outside that range are clipped, with a warning that names ``what``.
    """
    arr = np.asarray(img, dtype=np.float32)
    top = 1.0 if img.mode == "F" else 65535.0
    finite = np.isfinite(arr)
    numbers = bool(finite.all())
    values = arr if numbers else arr[finite]  # one copy, and only where there is something to leave out
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if lo < 0 or hi > top or not numbers:
        # a float TIFF in [0, 255], or a 32-bit one, came out white or black without a word
        odd = "" if numbers else ", and some are not numbers (read as 0)"
        warn_user(f"the samples of {what} run from {lo:g} to {hi:g}{odd}; a mode {img.mode} image is read as "
                  f"[0, {top:g}], so values outside it are clipped")
    if not numbers:
        arr = np.nan_to_num(arr, nan=0.0, posinf=top, neginf=0.0)
    if img.mode != "F":
        arr = arr / 65535.0
    return np.clip(arr, 0.0, 1.0)


def _has_alpha(img: Image.Image) -> bool:
    """Whether ``img`` has transparency: an alpha band, or a palette / colour key marked transparent."""
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or img.has_transparency_data


def _rgba(img: Image.Image) -> Image.Image:
    """``img`` as RGBA; Pillow converts premultiplied ``La`` only to ``LA``, not straight to RGBA."""
    return (img.convert("LA") if img.mode == "La" else img).convert("RGBA")


def _to_rgb(img: Image.Image, what: str = "the image") -> Image.Image:
    """Convert any decoded PIL image to 8-bit RGB; transparency is composited on white."""
    if img.mode in _HIGH_BIT_MODES:
        grey = np.round(_high_bit_to_float(img, what) * 255.0).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if _has_alpha(img):
        # Composite rather than drop alpha: colours under transparent pixels are
        # arbitrary (often black), while white is what most viewers show.
        rgba = _rgba(img)
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def open_rgb(path: PathLike) -> Image.Image:
    """Open ``path`` as an upright 8-bit RGB PIL image.

    Grey, palette, CMYK and 16-bit/float images are converted to RGB (16-bit
    values are rescaled, not clipped); alpha is composited on white.
    Raises ``ImageReadError`` for missing, unreadable or corrupt/truncated files.
    """
    return _to_rgb(_open(path), f"image '{os.fspath(path)}'")


def pil_to_tensor(img: Image.Image, what: str = "the image") -> torch.Tensor:
    """A decoded PIL image as float32 ``(3, H, W)`` in [0, 1], converted as files are (see ``open_rgb``); ``what``
    names it in a warning."""
    if img.mode in _HIGH_BIT_MODES:
        grey = torch.from_numpy(_high_bit_to_float(img, what))
        return grey.expand(3, -1, -1).contiguous()
    rgb = np.array(_to_rgb(img))  # a writable copy for torch
    return kornia.image.image_to_tensor(rgb, keepdim=True).float().div_(255.0)


def mask_region(img: Image.Image, what: str = "the mask") -> np.ndarray:
    """The protected region of a decoded mask image: any non-zero channel of an opaque pixel, (H, W) bool."""
    if img.mode in _GREY_MODES:
        samples = np.asarray(img)
        if img.mode == "F" and np.isnan(samples).any():  # NaN != 0 would read as protected
            raise ImageReadError(f"{what} {NAN_MASK}")
        return samples != 0
    rgba = np.asarray(_rgba(img))
    return rgba[..., :3].any(axis=-1) & (rgba[..., 3] > 0)


def _drawn_in_black(img: Image.Image) -> bool:
    """Whether ``img`` has strokes that are opaque (in part) and black, on pixels that are fully transparent."""
    if img.mode in _GREY_MODES or not _has_alpha(img):
        return False
    alpha = np.asarray(_rgba(img))[..., 3]
    return bool((alpha > 0).any() and (alpha == 0).any())


def image_size(path: PathLike) -> tuple[int, int]:
    """``(width, height)`` of ``path`` upright, after decoding it whole: a damaged file fails here as in a read."""
    return _open(path).size


def read_image(path: PathLike) -> torch.Tensor:
    """Read ``path`` as a float32 ``(3, H, W)`` tensor in [0, 1].

    16-bit greyscale keeps its precision (value / 65535). 16-bit RGB(A) PNGs are
    reduced to 8 bits by PIL itself, which has no 16-bit colour mode.
    """
    return pil_to_tensor(_open(path), f"image '{os.fspath(path)}'")


def read_mask(path: PathLike, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read a mask as a float32 ``(1, H, W)`` tensor with values in {0, 1}.

    Like LaMa, any non-zero pixel (in any colour channel) marks the region, so
    masks should be stored losslessly (PNG). Transparent pixels count as zero,
    i.e. alpha is composited on black. ``size`` is the image's ``(H, W)``; a
    mask of another size raises ``ImageReadError``.
    """
    if size is not None and (isinstance(size, (int, str)) or len(size) != 2):
        raise TypeError(f"size is the image's (H, W), e.g. image.shape[-2:], got {size!r}")
    img = _open(path, "mask")
    region = mask_region(img, f"mask '{os.fspath(path)}'")
    if not region.any() and _drawn_in_black(img):
        warn_user(f"mask '{os.fspath(path)}' is drawn in black on a transparent background, so it marks nothing: "
                  "the region is its non-black pixels; paint it in white")
    if size is not None and tuple(region.shape) != tuple(size):
        (h, w), (ih, iw) = region.shape, size
        # a photo stored sideways and shown upright by its EXIF orientation is read upright: draw the mask so
        sideways = " (turned: draw the mask on the image as viewers show it)" if (h, w) == (iw, ih) else ""
        raise ImageReadError(f"mask '{os.fspath(path)}' is {w}x{h} but the image is {iw}x{ih}{sideways}")
    return torch.from_numpy(region[None].astype(np.float32))


# folders that operating systems, NAS boxes and archivers fill with copies that are no photos: Synology's
# thumbnails, zip's macOS resource forks (hidden names, a leading dot, are left out too: "._IMG.jpg", ".Trashes")
CLUTTER = ("@eaDir", "__MACOSX")


def files_under(folder: str | os.PathLike, hidden: bool = False) -> list[Path]:
    """Every file below ``folder``, sorted, through linked folders too (each real folder once: no loop, no file
    twice); names with a leading dot and ``CLUTTER`` folders are left out unless ``hidden``."""
    root = Path(folder)
    seen, found = {os.path.realpath(root)}, []
    for top, folders, files in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(folders):
            real = os.path.realpath(os.path.join(top, name))
            if (hidden or not (name.startswith(".") or name in CLUTTER)) and real not in seen:
                seen.add(real)
                kept.append(name)
        folders[:] = kept
        found += [Path(top, name) for name in files if hidden or not name.startswith(".")]
    return sorted(found)


def _marks_mask(tail: str, mask_suffix: str) -> bool:
    """Whether a name's ``tail`` (what follows the image's name) is LaMa's mask suffix: ``_mask``, ``_mask001``,
    ``_mask_sky``, not the start of a word (``_masked``, ``_masks``)."""
    rest = tail[len(mask_suffix):]
    return tail.startswith(mask_suffix) and not rest[:1].isalpha()


def find_image_mask_pairs(
    folder: str | os.PathLike, mask_suffix: str = "_mask"
) -> list[tuple[Path, list[Path]]]:
    """Pair every image under ``folder`` with its masks, by LaMa's naming convention.

    ``dir/NAME.jpg`` (any of ``IMAGE_SUFFIXES``) goes with the PNG files
    ``dir/NAME{mask_suffix}*.png`` beside it, where ``*`` is empty or starts with
    a non-letter (``_mask001``, ``_mask_sky``; ``NAME_masked.png`` is a photo).
    PNG files named so are masks, never images, and so are other files named as
    the mask of an image beside them (``unpaired_masks`` reports both kinds);
    any other file, such as ``gas_mask.jpg`` alone, is an image. Images without
    masks are kept, with an empty list, so the caller decides what that means;
    so are links to nothing, which the caller then fails to read and reports.
    Hidden files and clutter folders are left out (``files_under``). Sorted by path.
    """
    pairs = []
    for path in files_under(folder):
        if path.suffix.lower() not in IMAGE_SUFFIXES or is_mask_name(path, mask_suffix):
            continue
        pairs.append((path, masks_beside(path, mask_suffix)))
    return pairs


def masks_beside(path: Path, mask_suffix: str = "_mask") -> list[Path]:
    """The masks of image ``path``, by LaMa's naming: the PNG files ``NAME{mask_suffix}*.png`` beside it, sorted."""
    return sorted(m for m in path.parent.glob(glob_escape(f"{path.stem}{mask_suffix}") + "*")
                  if m.suffix.lower() == ".png" and m.is_file() and _marks_mask(m.stem[len(path.stem):], mask_suffix))


def is_mask_name(path: Path, mask_suffix: str = "_mask") -> bool:
    """Whether ``path`` is named as a mask: a PNG with ``mask_suffix`` in its name, or another image file named
    ``NAME{mask_suffix}...`` beside an image ``NAME`` (a mask saved in the wrong format)."""
    parts = path.stem.split(mask_suffix)
    # NAME before each occurrence that marks a mask
    owners = {mask_suffix.join(parts[:i]) for i in range(1, len(parts))
              if _marks_mask(mask_suffix + mask_suffix.join(parts[i:]), mask_suffix)}
    if not owners:
        return False
    if path.suffix.lower() == ".png":
        return True
    return any(path.with_name(owner + suffix).is_file() for owner in owners if owner
               for suffix in {*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES)})


def unpaired_masks(folder: str | os.PathLike, pairs: list[tuple[Path, list[Path]]],
                   mask_suffix: str = "_mask") -> list[Path]:
    """The masks under ``folder`` that no image of ``pairs`` claims: their image is missing or misnamed, or they
    are not PNG files."""
    claimed = {mask for _, masks in pairs for mask in masks}
    return [path for path in files_under(folder) if path.suffix.lower() in IMAGE_SUFFIXES
            and is_mask_name(path, mask_suffix) and path.is_file() and path not in claimed]
