"""One gradient step: the input gradient of the protection objective, and the FGSM noise it gives.

``-eps * sign(g)``, with g the gradient of the total loss at zero noise, costs one
forward and backward pass through the inpainter and keeps most of the 20-step
optimiser's gain: the reference point between "one generator pass" and "the optimiser".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def layer_gradient(inpainter: nn.Module, task: ProtectionTask, k: int, weights: LossWeights | None = None
                   ) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
    """The total loss's gradient at the image and at the output of the inpainter's layer k, in one backward pass.

    Returns the image (requiring grad), layer k's outputs in the batched (attack, incp, hide) forward pass (an FFC
    layer gives a (local, global) pair), the image gradient and the layer gradient (both parts along channels,
    the order of ``Inpainter.encoder_layers``), so that a caller can send another field back through layers 1..k.
    """
    store: dict[str, list[Tensor]] = {}

    def keep(module, args, out) -> None:
        store.setdefault("out", [t for t in (out if isinstance(out, tuple) else (out,)) if torch.is_tensor(t)])

    hook = inpainter.net.model[k].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = task.image.detach().clone().requires_grad_(True)
            total = protection_losses(inpainter, x, task, weights)["total"].sum()
            grad, *grads = torch.autograd.grad(total, [x, *store["out"]], retain_graph=True)
    finally:
        hook.remove()
    return x, store["out"], grad, torch.cat(grads, dim=1)


def head_field(layer_grad: Tensor, task: ProtectionTask) -> Tensor:
    """The field an encoder-gradient head carrying layers 1..k can use: the attack's gradient at layer k plus the
    incp term's where its layer-k cell sees no ring pixel (the incp edit never reads the ring, so its field there
    would only push through the attack's gates wrongly). ``layer_grad``: :func:`layer_gradient`'s last output."""
    b = task.image.shape[0]
    outside = 1 - F.adaptive_max_pool2d(task.dilated, layer_grad.shape[-2:])
    return layer_grad[:b] + layer_grad[b:2 * b] * outside
