"""The losses of LaMa's training recipe that work offline, plus the hole metrics.

LaMa (``saicinpainting/training``) trains with a masked L1, an adversarial
loss (non-saturating with R1), discriminator feature matching and a perceptual
loss on a pretrained segmentation ResNet ("ResNet-PL", weight 30 in big-lama).
The perceptual loss needs ImageNet/ADE20k weights that cannot be had here, so
it is left out; :func:`amplitude_spectrum_loss` takes its place against the
blur that pixel losses alone produce.

Images are (B,3,H,W) in [0,1], masks (B,1,H,W) with 1 on the hole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def masked_l1_loss(pred: Tensor, target: Tensor, mask: Tensor, weight_missing: float, weight_known: float) -> Tensor:
    """LaMa's L1 with one weight for the hole and one for the known region, averaged over all pixels.

    Applied to the raw prediction, so ``weight_known`` teaches the network to
    reproduce the pixels it was given (which keeps the seam invisible).
    """
    weights = mask * weight_missing + (1 - mask) * weight_known
    return (weights * (pred - target).abs()).mean()


def amplitude_spectrum_loss(pred: Tensor, target: Tensor, mask: Tensor, patch: int = 32) -> Tensor:
    """L1 between the amplitude spectra of local patches, weighted by each patch's share of hole.

    The high-frequency term standing in for the perceptual loss. It is blind to
    phase, i.e. to where exactly an edge or a texture lies, so a plausible but
    shifted texture costs little while a blurry fill, which has lost the high
    frequencies, costs a lot: the opposite of pixel losses, whose optimum under
    uncertainty is the blurry mean. An image-gradient L1 was the alternative but
    is position-bound like any pixel loss and so still rewards blur. Patches
    (``patch`` px, clipped to the image) keep it local; remainder rows and
    columns beyond the last whole patch are ignored. Pass the composited image as
    ``pred`` so that seams count too. Zero for identical images.
    """
    p = min(patch, pred.shape[-2], pred.shape[-1])

    def tiles(x: Tensor) -> Tensor:  # (B,C,H,W) -> (B,C,nh,nw,p,p)
        return x.unfold(2, p, p).unfold(3, p, p)

    def amplitude(x: Tensor) -> Tensor:
        # FFTs need float32 (and cuFFT rejects half precision under autocast)
        return torch.fft.rfft2(tiles(x).float(), norm="ortho").abs()

    error = (amplitude(pred) - amplitude(target)).abs().mean(dim=(1, 4, 5))  # (B,nh,nw)
    weight = tiles((mask > 0).to(error.dtype)).mean(dim=(1, 4, 5))
    return (error * weight).sum() / weight.sum().clamp_min(1e-8)


# --- adversarial (LaMa's NonSaturatingWithR1) --------------------------------------------------

def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss, softplus(-D(fake)), over every patch of the whole image (as big-lama)."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1: the squared gradient norm of D at real images, per image, averaged.

    ``real_images`` must have gone into D with ``requires_grad``; the graph is kept
    (create_graph) so the penalty trains D. Zero when gradients are disabled.
    """
    if not torch.is_grad_enabled():
        return real_logits.new_zeros(())
    if not real_images.requires_grad:
        raise ValueError("R1 needs the real images to require grad before they go through the discriminator")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def resize_mask(mask: Tensor, size: tuple[int, int], allow_scale_mask: bool = True) -> Tensor:
    """The mask at the discriminator's logit resolution, nearest-neighbour (LaMa's default mode)."""
    size = tuple(size)
    if tuple(mask.shape[-2:]) == size:
        return mask
    if not allow_scale_mask:
        raise ValueError(f"mask is {tuple(mask.shape[-2:])} but the logits are {size}; set allow_scale_mask")
    return F.interpolate(mask, size=size, mode="nearest")


def discriminator_adversarial_loss(
    real_logits: Tensor,
    fake_logits: Tensor,
    real_images: Tensor,
    mask: Tensor,
    gp_coef: float = 0.001,
    mask_as_fake_target: bool = True,
    allow_scale_mask: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Discriminator loss: softplus(-D(real)) + gp_coef * R1 + fake term; returns (loss, metrics).

    With ``mask_as_fake_target`` D is taught that only the hole of a fake is fake:
    its known pixels count as real, so D learns to find the hole rather than to
    tell images apart by their statistics. Without it, the whole fake is fake.
    """
    real_loss = F.softplus(-real_logits)
    penalty = r1_penalty(real_logits, real_images)
    fake_loss = F.softplus(fake_logits)
    if mask_as_fake_target:
        m = resize_mask(mask, fake_logits.shape[-2:], allow_scale_mask)
        fake_loss = m * fake_loss + (1 - m) * F.softplus(-fake_logits)
    loss = real_loss.mean() + gp_coef * penalty + fake_loss.mean()
    metrics = {"real_logit": real_logits.mean().detach(), "fake_logit": fake_logits.mean().detach(),
               "r1": penalty.detach()}
    return loss, metrics


def feature_matching_loss(fake_features: list[Tensor], real_features: list[Tensor], p: int = 2) -> Tensor:
    """Mean over D's layers of the L2 (``p=2``, LaMa's) or L1 distance between fake and real activations.

    Pass detached real features: they are targets, not something to train.
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError("feature matching needs the same, non-zero number of fake and real feature maps")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    distance = F.mse_loss if p == 2 else F.l1_loss
    return torch.stack([distance(f, r) for f, r in zip(fake_features, real_features)]).mean()


# --- hole metrics and the trivial baseline --------------------------------------------------------

def hole_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per-image mean absolute error over the hole's pixels and channels: (B,); 0 for an empty hole."""
    m = (mask > 0).to(pred.dtype)
    return ((pred - target).abs() * m).sum(dim=(1, 2, 3)) / (m.sum(dim=(1, 2, 3)) * pred.shape[1]).clamp_min(1)


def mean_colour_fill(image: Tensor, mask: Tensor) -> Tensor:
    """Each image's hole filled with the mean colour of its known pixels (the floor any inpainter must beat)."""
    known = (mask <= 0).to(image.dtype)
    mean = (image * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    return known * image + (1 - known) * mean


__all__ = ["masked_l1_loss", "amplitude_spectrum_loss", "generator_adversarial_loss", "r1_penalty", "resize_mask",
           "discriminator_adversarial_loss", "feature_matching_loss", "hole_l1", "mean_colour_fill"]
