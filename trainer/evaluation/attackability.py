"""How attackable an inpainter is: the probes run during training and by ``evaluate-inpainter``.

PaintGuard only works if a small noise can steer the inpainter's fill. A
lama-tiny that ignores its context (or blurs everything into a mean) would be
trivially "protected" or impossible to protect, and either would make it a poor
stand-in for LaMa. Two cheap per-image measurements:

* :func:`steering_gain`: how far 20 Adam steps of +-eps noise can move the fill
  from the clean fill, in units of eps (0 = the fill ignores the noise).
* :func:`protection_strength`: the paper's 20-step optimiser against the model,
  attack PSNR to the target colour before and after, and whether it succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import masked_mse, prepare_task, protection_losses, psnr_from_mse
from trainer.objective.metrics import (
    SUCCESS_DB,  # attack PSNR at which a protection counts as successful
)

Tensor = torch.Tensor


def steering_gain(
    inpainter: nn.Module,
    image: Tensor,
    mask: Tensor,
    steps: int = 20,
    eps: float = 0.025,
    lr: float = 0.1,
    betas: tuple[float, float] = (0.5, 0.5),
    adam_eps: float = 1e-10,
    init_scale: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-image (B,) RMS change of the hole's fill that a +-eps noise can cause, divided by eps.

    Adam maximises masked_mse(f(x + d, m), f(x, m), m) with the optimiser settings
    of the 20-step protection (noise uniform in [0, init_scale), clipped to +-eps
    and the image to [0, 1] before every evaluation). The best value seen over the
    ``steps + 1`` evaluations is kept: with betas (0.5, 0.5) Adam oscillates and the
    last iterate is not always the furthest one.
    """
    with torch.no_grad():
        clean = inpainter(image, mask)
    noise = torch.rand(image.shape, generator=generator, device=image.device, dtype=image.dtype) * init_scale
    noise.requires_grad_(True)
    optimiser = torch.optim.Adam([noise], lr=lr, betas=betas, eps=adam_eps)
    best = torch.zeros(image.shape[0], device=image.device, dtype=image.dtype)
    for step in range(steps + 1):
        with torch.no_grad():
            noise.clamp_(-eps, eps)
        last = step == steps
        with torch.set_grad_enabled(not last):
            mse = masked_mse(inpainter((image + noise).clamp(0, 1), mask), clean, mask)
        best = torch.maximum(best, mse.detach())
        if last:
            break
        optimiser.zero_grad(set_to_none=True)
        # minimising the negative sum maximises every image's own deviation
        (-mse.sum()).backward()
        optimiser.step()
    return best.sqrt() / eps


@dataclass
class ProtectionStrength:
    """Per-image (B,) results of the 20-step protection against one inpainter."""

    psnr_before: Tensor  # attack PSNR to the target colour without noise
    psnr_after: Tensor  # ... after the optimiser's noise
    success: Tensor  # 1.0 where psnr_after >= threshold

    def summary(self) -> dict[str, float]:
        return {"attack_psnr_before": float(self.psnr_before.mean()),
                "attack_psnr_after": float(self.psnr_after.mean()),
                "success_rate": float(self.success.mean())}


def protection_strength(
    inpainter: nn.Module,
    image: Tensor,
    mask: Tensor,
    config: IterativeConfig | None = None,
    threshold_db: float = SUCCESS_DB,
    generator: torch.Generator | None = None,
) -> ProtectionStrength:
    """Run :func:`protect_iterative` and report attack PSNR before/after and success per image."""
    config = config or IterativeConfig()
    task = prepare_task(inpainter, image, mask, dilation=config.dilation)
    with torch.no_grad():
        before = protection_losses(inpainter, task.image, task, config.weights)["attack"]
    result = protect_iterative(inpainter, task.image, task.mask, config, generator=generator, task=task)
    after = result.history["attack"][-1]
    psnr_after = psnr_from_mse(after)
    return ProtectionStrength(psnr_from_mse(before), psnr_after, (psnr_after >= threshold_db).to(image.dtype))


__all__ = ["steering_gain", "protection_strength", "ProtectionStrength", "SUCCESS_DB"]
