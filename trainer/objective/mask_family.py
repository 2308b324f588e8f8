"""A family of masks near the protected one: the edits an objective covers besides m itself.

The paper's objective attacks the protected mask m and its 17 x 17 dilation; an editor who draws a slightly
tighter, looser or shifted mask meets a protection made for another edit (``trainer.evaluation.editor_masks``
scores that). Minimising the mean of the total over m and ``FAMILY`` covers those edits too: the 20-step optimiser
does it with one task per member (``benchmarks/editor_mask_objective.py``), generator training draws one member per
image and step (:func:`draw_family`, ``GeneratorModule(family_p=...)``), the same mean in expectation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from generator.masks import dilate, erode, shift

Tensor = torch.Tensor

# 2 px tighter, 6 px looser, 4 px off: none of them is an editor's mask the protection is scored under (4 px
# tighter, 4 and 16 px looser, 8 px off), so a gain there is not a fit to the test's own masks
FAMILY: dict[str, Callable[[Tensor], Tensor]] = {
    "2 px tighter": partial(erode, size=5),
    "6 px looser": partial(dilate, size=13),
    "4 px off": partial(shift, pixels=4),
}


def check_family_p(p: float) -> None:
    """Refuse a probability of drawing a family member outside [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"family_p is a probability, in [0, 1]; got {p}")


def draw_family(mask: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Per mask of the batch (B,1,H,W), with probability ``p`` a uniformly drawn ``FAMILY`` member of it instead.

    A member that would leave nothing of its mask keeps the mask itself. ``p = 3/4`` weighs m and each member
    equally, as the optimiser's mean over the four does. With ``p = 0`` no random number is drawn.
    """
    check_family_p(p)
    mask = (mask > 0).to(mask.dtype)
    if p == 0:
        return mask
    device = generator.device if generator is not None else mask.device
    b = mask.shape[0]
    chosen = torch.rand(b, generator=generator, device=device) < p
    member = torch.randint(len(FAMILY), (b,), generator=generator, device=device)
    out = mask.clone()
    for index, edit in enumerate(FAMILY.values()):
        rows = (chosen & (member == index)).nonzero()[:, 0].to(mask.device)
        if rows.numel():
            edited = edit(mask[rows])
            keep = edited.flatten(1).any(1)  # an emptied mask stays m
            out[rows[keep]] = edited[keep]
    return out


__all__ = ["FAMILY", "check_family_p", "draw_family"]
