"""Optimiser steps in an encoder-gradient generator's own coordinates: its field, not the image's pixels.

The paper's optimiser (``trainer.objective.iterative``) steps the noise with Adam at a rate of
0.1 against a bound of 0.025, so its first step from any start is a step to the corners of the
bound: started from a generator's noise (the image-space hybrid), one step throws the generator's
answer away and keeps what FGSM would (0.80 of the optimiser's gain against FGSM's 0.81 on val).
An encoder-gradient generator (``generator/encoder_head.py``) makes its noise from a field at
lama-tiny's layer-4 resolution, sent back through frozen copies of the encoder's layers; a step on
that field moves the noise along lama-tiny's own input-gradient structure and keeps the rest of
the generator's answer. The steps minimise the same total loss (``protection_losses``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from generator.unet import NoiseUNet
from trainer.objective.losses import LossWeights, prepare_task, protection_losses

Tensor = torch.Tensor

NO_FIELD = ("the 'refine' method steps a generator's field: it needs an encoder-gradient generator (such as "
            "generator-lama-tiny) on the torch backend")
FIELD_LR = 0.2  # Adam's rate, as a fraction of each image's mean |field|: chosen on val (model card)


def has_field(net: nn.Module | None) -> bool:
    """Whether ``net`` is a generator whose noise comes from a field (``head: stem-gradient``, ``head_layers`` > 1)."""
    return isinstance(net, NoiseUNet) and net.target_encoder is not None


def field_steps(net: NoiseUNet, inpainter: nn.Module, image: Tensor, mask: Tensor, steps: int,
                lr: float = FIELD_LR, target: Tensor | None = None, weights: LossWeights | None = None,
                dilation: int = 17, callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """The generator's noise after ``steps`` Adam updates of its field on the paper's total loss; (B,3,H,W).

    Each image's field moves by about ``lr`` times its own mean magnitude per step (Adam's
    first steps are sign steps), so images with weak and strong fields move alike. The noise
    stays ``eps * tanh(...)``, inside the bound by construction. ``callback(step, noise)``
    sees the noise before every update and after the last.
    """
    return stepped_field(net, inpainter, image, mask, steps, lr, target, weights, dilation, callback)[1]


def stepped_field(net: NoiseUNet, inpainter: nn.Module, image: Tensor, mask: Tensor, steps: int,
                  lr: float = FIELD_LR, target: Tensor | None = None, weights: LossWeights | None = None,
                  dilation: int = 17, callback: Callable[[int, Tensor], None] | None = None
                  ) -> tuple[Tensor, Tensor]:
    """:func:`field_steps`' final field (at layer k's resolution, for inputs padded to ``size_multiple``) and
    noise: the field is a teacher in the generator's own coordinates (``gradient-cache --field-teacher``)."""
    if not has_field(net):
        raise ValueError(NO_FIELD)
    h, w = image.shape[-2:]
    m = net.size_multiple
    padded, padded_mask = (F.pad(t, (0, -w % m, 0, -h % m), mode="replicate") for t in (image, mask))
    task = prepare_task(inpainter, image, mask, target, dilation)
    head, eps = net.target_encoder, net.config.eps
    with torch.no_grad():
        encoding = head.encode(padded, padded_mask)
        # float32 under autocast too: Adam's eps (1e-8) is 0 in float16, and the steps would divide by it
        start = net.field(padded, padded_mask, task.target, encoding).float()
    scale = start.abs().mean(dim=(1, 2, 3), keepdim=True)
    delta = torch.zeros_like(start, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=lr)

    def noise() -> Tensor:
        return eps * torch.tanh(head(start + scale * delta, padded, padded_mask, encoding)[..., :h, :w])

    for step in range(steps):
        current = noise()
        if callback is not None:
            callback(step, current.detach())
        optimiser.zero_grad(set_to_none=True)
        # summed: each image's gradient stays its own
        protection_losses(inpainter, (image + current).clamp(0, 1), task, weights)["total"].sum().backward()
        optimiser.step()
    with torch.no_grad():
        final = noise()
        field = start + scale * delta
    if callback is not None:
        callback(steps, final)
    return field, final
