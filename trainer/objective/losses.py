"""The protection objective of Attack-as-Defense, written once.

Both the 20-step optimiser and generator training call :func:`protection_losses`.
Images are (B,3,H,W) in [0,1], masks (B,1,H,W) with 1 on the region to protect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch
from torch import nn

from generator.masks import dilate
from generator.target import target_colour

Tensor = torch.Tensor

__all__ = ["target_colour", "dilate", "ring", "masked_mse", "LossWeights", "ProtectionTask", "prepare_task",
           "TaskTransform", "transform_task", "protection_losses", "reference_fills", "select_task", "repeat_task",
           "psnr_from_mse"]


def ring(mask: Tensor, size: int = 17) -> Tensor:
    """E'(m) = E(m) - m: the band around the mask that the dilation adds."""
    return dilate(mask, size) * (mask <= 0).to(mask.dtype)


def masked_mse(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Per-image mean squared error over the mask's pixels and all channels; 0 for an empty mask."""
    m = (mask > 0).to(a.dtype)
    err = ((a - b) ** 2 * m).sum(dim=(1, 2, 3))
    count = m.sum(dim=(1, 2, 3)) * a.shape[1]
    return err / count.clamp_min(1)


@dataclass
class LossWeights:
    """total = attack * L_attack + incp * L_incp + hide * L_hide (the paper uses 1, 1, 2)."""

    attack: float = 1.0
    incp: float = 1.0
    hide: float = 2.0


@dataclass
class ProtectionTask:
    """Everything about one batch that does not depend on the noise: computed once, reused every step."""

    image: Tensor
    mask: Tensor
    dilated: Tensor
    ring: Tensor
    target: Tensor  # (B,3,1,1)
    clean_ring_fill: Tensor  # f(x, E'(m)): what an edit of the ring looks like on the clean image


@torch.no_grad()
def prepare_task(inpainter: nn.Module, image: Tensor, mask: Tensor, target: Tensor | None = None,
                 dilation: int = 17) -> ProtectionTask:
    """Masks, target colour and the clean ring edit for a batch."""
    mask = (mask > 0).to(image.dtype)
    dilated = dilate(mask, dilation)
    band = dilated * (1 - mask)
    target = target_colour(image) if target is None else target
    return ProtectionTask(image, mask, dilated, band, target.reshape(-1, 3, 1, 1).to(image),
                          inpainter(image, band))


class TaskTransform(Protocol):
    """What happens to a protected image before the edit (``trainer.objective.eot.RandomTransforms``, ``FixedTransform``).

    ``sample`` draws one edit per image (its result has ``active``, a (B,) bool of the
    images it changes); ``apply`` performs it on images and ``apply_mask`` on masks, so
    that the same draw can be applied to several batches.
    """

    def sample(self, image: Tensor, generator: torch.Generator | None = None) -> Any: ...

    def apply(self, image: Tensor, params: Any) -> Tensor: ...

    def apply_mask(self, mask: Tensor, params: Any) -> Tensor: ...


def transform_task(inpainter: nn.Module, task: ProtectionTask, transform: TaskTransform, params: Any
                   ) -> ProtectionTask:
    """The task as the editor sees it after the drawn transformation: image, masks and the clean ring edit.

    The editor transforms the (protected) image and draws the mask on what it gets, so
    the masks move with any geometric step (each of m, E(m), E'(m) is transformed the
    same way, which keeps E'(m) = E(m) - m exactly). The target colour stays the
    original image's. The hide reference becomes f(T(x), E'(T m)): the benign edit of
    the equally transformed clean image. Against the untransformed f(x, E'(m)) the hide
    term would also charge the noise for the transformation's own effect on the ring
    (blur, JPEG artefacts: a floor the noise cannot remove, whose gradient pushes it to
    undo the edit instead of hiding), and after a shift the two would not even be in
    the same coordinates. It costs one inpainter call without gradients on the images
    the draw changes; the others keep ``task.clean_ring_fill``.
    """
    masks = [transform.apply_mask(m, params) for m in (task.mask, task.dilated, task.ring)]
    with torch.no_grad():
        image = transform.apply(task.image, params)
        reference = task.clean_ring_fill
        changed = params.active.to(image.device).nonzero()[:, 0]
        if changed.numel():
            fill = inpainter(image[changed], masks[2][changed])
            reference = fill if changed.numel() == len(image) else reference.index_copy(0, changed, fill)
    return ProtectionTask(image, *masks, task.target, reference)


@torch.no_grad()
def reference_fills(inpainter: nn.Module, protected: Tensor, task: ProtectionTask) -> tuple[Tensor, Tensor]:
    """f(x', m) and f(x', E(m)) of another protected image (the teacher's): the targets of output distillation."""
    fills = inpainter(protected.repeat(2, 1, 1, 1), torch.cat([task.mask, task.dilated]))
    return fills[:len(protected)], fills[len(protected):]


def protection_losses(inpainter: nn.Module, protected: Tensor, task: ProtectionTask,
                      weights: LossWeights | None = None, transform: TaskTransform | None = None,
                      generator: torch.Generator | None = None,
                      reference: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """Per-image attack, incp, hide and total losses (each (B,)) for protected images.

    attack: f(x', m) inside m against the target colour; incp: the same on E(m);
    hide: f(x', E'(m)) inside E'(m) against the clean image's edit f(x, E'(m)).

    With ``transform`` (Expectation over Transformations), one transformation T is
    drawn per image (from ``generator`` when given) and the losses are those of the
    edit after it: x' becomes T(x'), the masks T's geometry applied to them and the
    hide reference f(T(x), E'(T m)) (see :func:`transform_task`). Differentiable
    through T.

    With ``reference`` (:func:`reference_fills` of the teacher's protected image), also
    "output": the squared distance of this image's two fills to those, on m and E(m)
    (output distillation; not part of total). It reuses the fills the attack terms make.
    """
    if transform is not None and reference is not None:
        raise ValueError("output distillation compares untransformed fills: use it without a transformation")
    if transform is not None:
        params = transform.sample(protected, generator)
        task = transform_task(inpainter, task, transform, params)
        protected = transform.apply(protected, params)
    w = weights or LossWeights()
    b = protected.shape[0]
    # the three edits share one batched forward pass
    fills = inpainter(protected.repeat(3, 1, 1, 1), torch.cat([task.mask, task.dilated, task.ring]))
    attack_fill, incp_fill, hide_fill = fills.split(b)
    target = task.target.expand_as(protected)
    attack = masked_mse(attack_fill, target, task.mask)
    incp = masked_mse(incp_fill, target, task.dilated)
    hide = masked_mse(hide_fill, task.clean_ring_fill, task.ring)
    total = w.attack * attack + w.incp * incp + w.hide * hide
    losses = {"attack": attack, "incp": incp, "hide": hide, "total": total}
    if reference is not None:
        losses["output"] = masked_mse(attack_fill, reference[0], task.mask) + masked_mse(incp_fill, reference[1],
                                                                                          task.dilated)
    return losses


def select_task(task: ProtectionTask, index: Tensor | Sequence[int]) -> ProtectionTask:
    """The task of some of the batch's images."""
    return ProtectionTask(*(getattr(task, f.name)[index] for f in fields(task)))


def repeat_task(task: ProtectionTask, times: int) -> ProtectionTask:
    """The task with its batch repeated ``times`` times (image i of copy k at k * B + i)."""
    return ProtectionTask(*(getattr(task, f.name).repeat(times, 1, 1, 1) for f in fields(task)))


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB for signals in [0,1]; an MSE of 0 is capped at 100 dB."""
    return -10 * torch.log10(mse.clamp_min(1e-10))
