"""Masks an editor might draw instead of the protected one, for ``paintguard compare``'s ``editor_masks``.

The paper's objective covers two edits: the protected mask m itself (attack) and m dilated by 17 x 17 (incp). An
editor who wants the region gone draws their own mask, looser or tighter, or a little off. Each entry maps the
protected masks (B,1,H,W) to the editor's, of the same shape; scoring then inpaints the editor's mask and asks
the fill for the same target colour (``trainer.evaluation.scoring.score_runs``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from generator.masks import dilate, erode, shift

Tensor = torch.Tensor
EditorMask = Callable[[Tensor], Tensor]


EDITOR_MASKS: dict[str, EditorMask] = {
    "mask-erode-9": partial(erode, size=9),  # 4 px inside the protected region's edge
    "mask-dilate-9": partial(dilate, size=9),  # 4 px beyond it: between m and the 17 x 17 dilation incp covers
    "mask-dilate-33": partial(dilate, size=33),  # 16 px beyond it, twice incp's margin
    "mask-shift-8": partial(shift, pixels=8),  # the same shape, 8 px right and down
}
# how `paintguard inpaint` and the web page's editor view name them (web/src/edit.js has the same words)
DRAWN = {"mask-erode-9": "4 px tighter", "mask-dilate-9": "4 px looser", "mask-dilate-33": "16 px looser",
         "mask-shift-8": "8 px off"}


def get_editor_mask(name: str) -> EditorMask:
    """The registered editor's mask called ``name``."""
    if name not in EDITOR_MASKS:
        raise ValueError(f"unknown editor mask '{name}'; choose from {', '.join(EDITOR_MASKS)}")
    return EDITOR_MASKS[name]


def emptied(name: str, masks: list[Tensor]) -> list[int]:
    """The indices of the protected masks (each (1,H,W)) of which editor's mask ``name`` leaves nothing to edit."""
    edit = get_editor_mask(name)
    return [i for i, mask in enumerate(masks) if not edit(mask[None]).any()]
