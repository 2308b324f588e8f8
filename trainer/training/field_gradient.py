"""How the end-to-end loss's gradient reaches an encoder-gradient generator's U-Net through its field.

Refine (``trainer.objective.field_steps``) steps each image's field with Adam: its first step
moves every element of the field by the same amount, in the direction of the gradient's sign,
and one such step keeps 0.81 of the optimiser's gain on val where the generator keeps 0.70.
Plain end-to-end training hands the U-Net the raw gradient at the field instead, in which a few
large elements, and the images with the largest gradients, dominate a batch. ``field_gradient``
reshapes that gradient on its way back into the U-Net (the loss and its value do not change):

- ``loss``: as it comes (plain end-to-end training);
- ``sample``: each image's gradient scaled, so that every image counts alike;
- ``sign``: each image's gradient replaced by its signs: the U-Net is trained towards refine's
  first step, image by image.

Both give every image the batch's mean |g|, so the rate means what it did. The whole gradient at the field is
reshaped, a supervised ``field_weight`` term's included.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
FIELD_GRADIENTS = ("loss", "sample", "sign")


def check_field_gradient(mode: str, has_field: bool = True) -> None:
    """Refuse an unknown mode, or a reshaping for a generator that has no field."""
    if mode not in FIELD_GRADIENTS:
        raise ValueError(f"field_gradient must be one of {', '.join(FIELD_GRADIENTS)}, got {mode!r}")
    if mode != "loss" and not has_field:
        raise ValueError(f"field_gradient: {mode} needs a generator with a field (head: stem-gradient, "
                         "head_layers > 1)")


def reshaped(grad: Tensor, mode: str) -> Tensor:
    """The gradient at a batch of fields (B, C, h, w), reshaped as ``mode`` says."""
    check_field_gradient(mode)
    if mode == "loss":
        return grad
    size = grad.abs().mean(dim=tuple(range(1, grad.dim())), keepdim=True)
    # an image with no gradient (nothing to steer) keeps none
    shape = grad.sign() if mode == "sign" else grad / size.clamp_min(torch.finfo(grad.dtype).tiny)
    return shape * size.mean()


def reshape_field_gradient(field: Tensor, mode: str) -> Tensor:
    """``field`` itself; in the backward pass the gradient through it is ``reshaped(grad, mode)``."""
    check_field_gradient(mode)
    if mode != "loss" and field.requires_grad:
        field.register_hook(lambda grad: reshaped(grad, mode))
    return field
