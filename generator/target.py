"""The target colour that protection steers an inpainter's fill towards."""

from __future__ import annotations

import torch

Tensor = torch.Tensor

# checked in this order; on a tie the earlier one wins
TARGET_COLOURS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
TARGET_NAMES = ("green", "red", "blue")  # of TARGET_COLOURS, in order


def colour_name(colour: Tensor) -> str:
    """The name of a target colour (3,), as ``target_colour`` gives it."""
    matches = (TARGET_COLOURS == colour.detach().cpu().float()).all(dim=1).nonzero()
    if not len(matches):
        raise ValueError(f"{colour.tolist()} is not a target colour")
    return TARGET_NAMES[matches[0].item()]


def target_colour(image: Tensor) -> Tensor:
    """The pure colour furthest from each image's mean colour: (B,3,H,W) -> (B,3).

    As in the reference: the mean of the 8-bit image, truncated to integers, compared
    by the sum of squared differences normalised by 255.
    """
    if not isinstance(image, Tensor) or not image.is_floating_point() or image.dim() != 4 or image.shape[1] != 3:
        what = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"target_colour takes float images (B,3,H,W) in [0, 1], got {what}")
    mean = torch.round(image.detach().clamp(0, 1) * 255).mean(dim=(-2, -1)).floor() / 255
    colours = TARGET_COLOURS.to(image)
    distance = ((mean[:, None, :] - colours[None]) ** 2).sum(-1)
    return colours[distance.argmax(dim=1)]  # argmax returns the first maximum
