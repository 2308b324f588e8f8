"""One gradient step: the input gradient of the protection objective, and the FGSM noise it gives.

``-eps * sign(g)``, with g the gradient of the total loss at zero noise, costs one
forward and backward pass through the inpainter and keeps most of the 20-step
optimiser's gain: the reference point between "one generator pass" and "the optimiser".
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.objective.losses import LossWeights, ProtectionTask, prepare_task, protection_losses

Tensor = torch.Tensor


def input_gradient(inpainter: nn.Module, task: ProtectionTask, weights: LossWeights | None = None) -> Tensor:
    """Per image, the gradient of the total protection loss with respect to the image, at zero noise."""
    with torch.enable_grad():
        image = task.image.detach().clone().requires_grad_(True)
        total = protection_losses(inpainter, image, task, weights)["total"].sum()
        (grad,) = torch.autograd.grad(total, image)
    return grad


def protect_fgsm(inpainter: nn.Module, image: Tensor, mask: Tensor, eps: float = 0.025,
                 weights: LossWeights | None = None) -> Tensor:
    """The protected image ``clip(x - eps * sign(g))`` of one signed gradient step."""
    task = prepare_task(inpainter, image, mask)
    return (image - eps * torch.sign(input_gradient(inpainter, task, weights))).clamp(0, 1)
