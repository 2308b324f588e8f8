"""What can happen to a protected image between saving and inpainting, as batched tensor functions.

Every transformation maps images (B,3,H,W) in [0,1] to images of the same shape in
[0,1] on the same device, and takes an optional ``generator`` for the random ones,
so that the registry can be used both to score robustness (``paintguard compare``)
and to augment training. JPEG goes through Pillow's real encoder and is not
differentiable; the others are.
"""

from __future__ import annotations

import io
import math
from functools import partial
from typing import Protocol

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Tensor = torch.Tensor


class Transform(Protocol):
    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


def png_round_trip(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """What an 8-bit PNG holds: PNG is lossless, so this is rounding to 8 bits (identity on 8-bit input)."""
    return torch.round(images.clamp(0, 1) * 255) / 255


def round_to_8bit(image: Tensor, straight_through: bool = True) -> Tensor:
    """Round to the 8-bit grid as saving a PNG does; the gradient passes straight through."""
    rounded = torch.round(image * 255) / 255
    return image + (rounded - image).detach() if straight_through else rounded


def jpeg(images: Tensor, quality: int, generator: torch.Generator | None = None) -> Tensor:
    """Encode each image as an 8-bit JPEG of ``quality`` with Pillow, in memory, and decode it again."""
    pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for array in pixels:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as img:
            decoded.append(np.array(img.convert("RGB")))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
    return out.to(device=images.device, dtype=images.dtype) / 255


def resize_half(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Downscale to half size (antialiased, as image viewers and web services do) and back up to the original size."""
    h, w = images.shape[-2:]
    small = F.interpolate(images, size=(max(1, h // 2), max(1, w // 2)), mode="bilinear", antialias=True,
                          align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def gaussian_blur(images: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian blur with a kernel of +-3 sigma, reflecting at the borders."""
    size = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(images, (size, size), (sigma, sigma)).clamp(0, 1)


def gaussian_noise(images: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma``; seeded by ``generator`` when given."""
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + sigma * noise).clamp(0, 1)


TRANSFORMS: dict[str, Transform] = {
    "png": png_round_trip,
    "jpeg90": partial(jpeg, quality=90),
    "jpeg75": partial(jpeg, quality=75),
    "resize-half": resize_half,
    "blur-1": partial(gaussian_blur, sigma=1.0),
    "noise-0.01": partial(gaussian_noise, sigma=0.01),
}


def get_transform(name: str) -> Transform:
    """The registered transformation called ``name``."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
    return TRANSFORMS[name]


__all__ = ["Transform", "TRANSFORMS", "get_transform", "png_round_trip", "jpeg", "resize_half", "gaussian_blur",
           "gaussian_noise"]
