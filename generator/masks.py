"""Mask geometry shared by the protector and the protection objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def dilate(mask: Tensor, size: int = 17) -> Tensor:
    """E(m): binary dilation by a size x size square (centred, odd size), shape kept."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"dilation size must be a positive odd number, got {size}")
    # a max-pool over the window is exactly binary dilation by a square, and much cheaper than unfold
    return F.max_pool2d((mask > 0).to(mask.dtype), size, stride=1, padding=size // 2)


def erode(mask: Tensor, size: int) -> Tensor:
    """Binary erosion by a size x size square (centred, odd size); outside the image counts as masked, so a mask
    that reaches the border is not eaten from it."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"erosion size must be a positive odd number, got {size}")
    # max_pool pads with -inf, which the negation makes +inf: the border never erodes
    return -F.max_pool2d(-(mask > 0).to(mask.dtype), size, stride=1, padding=size // 2)


def shift(mask: Tensor, pixels: int) -> Tensor:
    """The mask moved ``pixels`` right and down; what leaves the image is lost, what enters is unmasked."""
    h, w = mask.shape[-2:]
    return F.pad(mask, (pixels, 0, pixels, 0))[..., :h, :w]
