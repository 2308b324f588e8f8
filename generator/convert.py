"""The image kinds the Python API accepts, to and from PaintGuard's tensors.

``to_tensor`` turns a torch tensor, PIL image, numpy array or file path into a
float32 (float64 for float64 input) ``(B, 3, H, W)`` batch in [0, 1] and remembers
what it was (``Kind``); ``from_tensor`` turns a batch back into that kind.
``mask_to_tensor`` does the same for masks (any non-zero pixel is protected, as in
LaMa). 8-bit outputs are rounded with ``quantize_within_bound`` and float outputs
stepped back where their rounding crossed the bound, so the bound survives every kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps

# The conversions read_image applies after decoding a file, reused for in-memory PIL images.
from generator.io import NAN_MASK, mask_region, pil_to_tensor, read_image, read_mask
from generator.save import check_unit_range, quantize_within_bound

Tensor = torch.Tensor
ImageLike = Tensor | Image.Image | np.ndarray | str | os.PathLike


@dataclass(frozen=True)
class Kind:
    """What an API input was, so that its result can be given back in the same form."""

    name: Literal["tensor", "pil", "numpy", "path"]
    batched: bool = False  # tensors: (B,3,H,W) rather than (3,H,W)
    dtype: Any = None  # tensors: torch dtype; numpy: np.uint8 or a float dtype
    device: torch.device | None = None


def check_has_data(x: Tensor, what: str) -> None:
    # torch's own errors for these come from deep inside its meta kernels
    if x.is_meta:
        raise ValueError(f"the {what} is on the 'meta' device, which holds no values; pass it on a real device")


def check_image_tensor(image: Tensor, what: str = "image tensor") -> None:
    """Refuse a tensor that is not a float image in [0, 1] with pixels (``protect_batch`` has no other check)."""
    check_has_data(image, what)
    if not image.is_floating_point():
        raise ValueError(f"{what}s must be floating point in [0, 1], got {image.dtype}")
    if image.numel() == 0:
        raise ValueError(f"the {what} has no pixels: shape {tuple(image.shape)}")
    check_unit_range(image, what)


def check_batch(image: Tensor, mask: Tensor) -> None:
    """Refuse a batch the networks cannot take: not tensors, shapes, a uint8 or 0..255 image, a NaN mask."""
    for x, what in ((image, "image"), (mask, "mask")):
        if not isinstance(x, Tensor):  # a PIL image or array failed with an AttributeError deep inside
            raise TypeError(f"the {what} must be a tensor, got {type(x).__name__}; Protector.protect takes PIL "
                            "images, numpy arrays and paths")
    image, mask = image.detach(), mask.detach()  # reading values off a graph warns
    if image.dim() != 4 or image.shape[1] != 3 or mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"expected image (B,3,H,W) and mask (B,1,H,W), got {tuple(image.shape)} and "
                         f"{tuple(mask.shape)}")
    if image.shape[-2:] != mask.shape[-2:] or image.shape[0] != mask.shape[0]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match image {tuple(image.shape)}")
    # a uint8 or 0..255 batch would otherwise come back almost white
    check_image_tensor(image, "image")
    check_has_data(mask, "mask")
    _check_no_nan(mask)


def check_target(target: Tensor, batch: int) -> Tensor:
    """A fill colour per image, (B,3) in [0,1], from (3,) or (B,3)."""
    if not isinstance(target, Tensor) or target.shape not in ((3,), (batch, 3)):
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must be a tensor (3,) or ({batch},3) of RGB colours in [0, 1], got {shape}")
    check_image_tensor(target, "target")
    return target.detach().expand(batch, 3)


def _check_no_nan(mask: Tensor | np.ndarray) -> None:
    # NaN != 0 would read as protected
    if isinstance(mask, Tensor):
        nan = mask.is_floating_point() and bool(mask.isnan().any())
    else:
        nan = np.issubdtype(mask.dtype, np.floating) and bool(np.isnan(mask).any())
    if nan:
        raise ValueError(f"the mask {NAN_MASK}")


def _numpy_to_tensor(arr: np.ndarray) -> Tensor:
    """(H,W), (H,W,1), (H,W,3) or (H,W,4) uint8 / float in [0,1] -> (3,H,W) float32 (float64 from float64)."""
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        check_unit_range(arr, "float image")
        # float64 kept: rounding it to float32 would move every pixel, the unmasked ones too
        x = arr.astype(np.float64 if arr.dtype.itemsize >= 8 else np.float32)
    else:
        raise ValueError(f"numpy images must be uint8 or float in [0, 1], got {arr.dtype}")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"numpy images must be (H,W), (H,W,3) or (H,W,4), got {arr.shape}")
    if x.shape[-1] == 4:  # composite on white, as generator.io does for files with alpha
        x = x[..., :3] * x[..., 3:] + (1 - x[..., 3:])
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).expand(3, -1, -1).contiguous()


def to_tensor(image: ImageLike) -> tuple[Tensor, Kind]:
    """Any supported image kind -> (float32 (B,3,H,W) in [0,1], float64 for float64 input; its ``Kind``).

    Tensors keep their device; grey and RGBA inputs become RGB (alpha composited
    on white); PIL images and file paths are turned upright per their EXIF
    orientation, as a viewer shows them (paths are read with ``generator.io.read_image``,
    16-bit precision kept).
    """
    x, kind = _to_tensor(image)
    if x.numel() == 0:
        raise ValueError(f"the image has no pixels: it is {x.shape[-1]}x{x.shape[-2]}")
    return x, kind


def _to_tensor(image: ImageLike) -> tuple[Tensor, Kind]:
    if isinstance(image, Tensor):
        if image.dim() not in (3, 4) or image.shape[-3] != 3:
            hint = ("; channels last? x.permute(2, 0, 1)" if image.dim() == 3 and image.shape[-1] in (3, 4)
                    else "; grey? x.expand(3, -1, -1) for (1,H,W)" if image.dim() in (2, 3) else "")
            raise ValueError(f"expected an image tensor (B,3,H,W) or (3,H,W), got {tuple(image.shape)}{hint}")
        image = image.detach()  # the result is not differentiable, and torch warns when it reads a value off a graph
        check_image_tensor(image)
        kind = Kind("tensor", image.dim() == 4, image.dtype, image.device)
        work = torch.promote_types(image.dtype, torch.float32)  # float64 kept, as protect_batch keeps it
        return (image if kind.batched else image[None]).to(work), kind
    if isinstance(image, Image.Image):
        # the user drew the mask on what a viewer shows, as for paths; a copy where there is no orientation
        return pil_to_tensor(ImageOps.exif_transpose(image))[None], Kind("pil")
    if isinstance(image, np.ndarray):
        return _numpy_to_tensor(image)[None], Kind("numpy", dtype=image.dtype)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)[None], Kind("path")
    raise TypeError(f"unsupported image type {type(image).__name__}; pass a tensor, PIL image, numpy array or path")


def mask_to_tensor(mask: ImageLike, image: Tensor) -> Tensor:
    """Any supported mask kind -> float (B,1,H,W) in {0,1} matching ``image`` (B,3,H,W) and its device.

    Tensors may be (B,1,H,W), (B,H,W), (1,H,W) or (H,W); one mask is shared by the whole batch.
    PIL masks are turned upright per their EXIF orientation, as PIL images are.
    """
    b, _, h, w = image.shape
    if isinstance(mask, Tensor):
        check_has_data(mask, "mask tensor")
        m = mask.detach()
        _check_no_nan(m)
        m = m[None, None] if m.dim() == 2 else m[:, None] if m.dim() == 3 else m
        if m.dim() != 4 or m.shape[1] != 1:
            raise ValueError(f"expected a mask (B,1,H,W), (B,H,W) or (H,W), got {tuple(mask.shape)}")
    elif isinstance(mask, Image.Image):
        m = torch.from_numpy(mask_region(ImageOps.exif_transpose(mask)))[None, None]
    elif isinstance(mask, np.ndarray):
        if mask.ndim not in (2, 3):
            raise ValueError(f"numpy masks must be (H,W) or (H,W,C), got {mask.shape}")
        _check_no_nan(mask)
        region = mask != 0 if mask.ndim == 2 else (mask != 0).any(axis=-1)
        m = torch.from_numpy(region)[None, None]
    elif isinstance(mask, (str, os.PathLike)):
        m = read_mask(mask, size=(h, w))[None]
    else:
        raise TypeError(f"unsupported mask type {type(mask).__name__}; pass a tensor, PIL image, numpy array or path")
    if tuple(m.shape[-2:]) != (h, w):
        mh, mw = m.shape[-2:]
        # the array's shape as given shows a layout mistake, e.g. a (H,W,1) tensor read as (B,H,W)
        shape = f" (shape {tuple(mask.shape)})" if isinstance(mask, (Tensor, np.ndarray)) else ""
        layout = {(Tensor, (h, w, 1)): "; channels last? mask[..., 0]",
                  (np.ndarray, (1, h, w)): "; channels first? mask[0]"}
        hint = next((note for (kind, dims), note in layout.items()
                     if isinstance(mask, kind) and tuple(mask.shape) == dims), "")
        raise ValueError(f"mask size {mw}x{mh}{shape} does not match the image's {w}x{h}{hint}")
    if m.shape[0] not in (1, b):
        rgb = "; an RGB mask? mask.any(0) gives one" if isinstance(mask, Tensor) and mask.dim() == 3 else ""
        raise ValueError(f"{m.shape[0]} masks for {b} images{rgb}")
    return (m.to(image.device) != 0).float().expand(b, -1, -1, -1)


def from_tensor(batch: Tensor, kind: Kind, original: Tensor | None = None, eps: float | None = None) -> Any:
    """A (B,3,H,W) batch in [0,1] back in the form ``kind`` describes.

    Tensors keep their shape, dtype and device. PIL images, paths and uint8 arrays
    come back as 8-bit RGB; with ``original`` and ``eps`` each pixel is rounded to the
    nearest 8-bit level within ``eps`` of the original, so the bound holds exactly.
    Float arrays come back as float (H,W,3); grey inputs come back as RGB. Float
    results given ``original`` and ``eps`` keep ``|result - original| <= eps`` in their own dtype.
    """
    if kind.name == "tensor":
        out = batch.to(device=kind.device, dtype=kind.dtype)
        if original is not None and eps is not None:
            out = _within(out, original.to(out), eps)
        return out if kind.batched else out[0]
    if kind.name == "numpy" and np.issubdtype(kind.dtype, np.floating):
        out = batch[0].permute(1, 2, 0).detach().cpu().numpy().astype(kind.dtype)
        if original is not None and eps is not None:
            out = _within(out, original[0].permute(1, 2, 0).cpu().numpy().astype(kind.dtype), eps)
        return out
    # without an original, a bound of 1 makes quantize_within_bound a plain rounding
    pixels = quantize_within_bound(batch[0], batch[0] if original is None else original[0],
                                   1.0 if original is None else eps)
    return pixels if kind.name == "numpy" else Image.fromarray(pixels)


def _within(out: Any, original: Any, eps: float) -> Any:
    """``out`` (a tensor or array) with each value that rounding carried past ``eps`` from ``original`` moved to
    the representable value nearest the bound, inside it.

    float16 and bfloat16 round a pixel by up to 2e-3, float32 by an ulp, and a float32 ``eps`` is itself 4e-10 above
    0.025: each enough to break the bound in the caller's dtype. ``original`` holds the caller's own values.
    """
    lib = np if isinstance(out, np.ndarray) else torch
    x, o = lib.asarray(out, dtype=lib.float64), lib.asarray(original, dtype=lib.float64)
    edge = lib.asarray(o + eps * lib.sign(x - o), dtype=out.dtype)  # the bound, rounded to nearest
    edge = lib.where(abs(lib.asarray(edge, dtype=lib.float64) - o) > eps, lib.nextafter(edge, original), edge)
    return lib.where(abs(x - o) > eps, edge, out)


__all__ = ["Kind", "to_tensor", "mask_to_tensor", "from_tensor", "check_image_tensor", "check_has_data", "ImageLike"]
