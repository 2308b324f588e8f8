"""The paper's per-image protection: 20 Adam steps on a bounded noise.

Used twice in PaintGuard: as the teacher during generator training and as the
baseline every result is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainer.objective.eot import EOTConfig, RandomTransforms
from trainer.objective.losses import LossWeights, ProtectionTask, prepare_task, protection_losses, repeat_task

Tensor = torch.Tensor


@dataclass
class IterativeConfig:
    """The reference settings (Attack as Defense, arXiv 2410.14966)."""

    steps: int = 20
    eps: float = 0.025
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.5)
    adam_eps: float = 1e-10
    init_scale: float = 0.01
    dilation: int = 17
    weights: LossWeights = field(default_factory=LossWeights)
    # Expectation over Transformations (trainer/objective/eot.py): None = off, the paper's optimiser. Otherwise every
    # step minimises the mean loss over eot_samples transformations drawn per image, as the robust generator does.
    eot: EOTConfig | dict[str, Any] | None = None
    eot_samples: int = 1

    def __post_init__(self) -> None:
        self.eot = EOTConfig.coerce(self.eot)
        if self.eot_samples < 1:
            raise ValueError(f"eot_samples must be at least 1, got {self.eot_samples}")


@dataclass
class IterativeResult:
    protected: Tensor  # (B,3,H,W) in [0,1]
    noise: Tensor  # (B,3,H,W), |noise| <= eps
    history: dict[str, Tensor]  # each (steps + 1, B): losses at every step, then of the returned result


def protect_iterative(
    inpainter: nn.Module,
    image: Tensor,
    mask: Tensor,
    config: IterativeConfig | None = None,
    target: Tensor | None = None,
    init_noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    task: ProtectionTask | None = None,
) -> IterativeResult:
    """Optimise a protective noise for a batch of images, each with its own mask and target.

    Follows the reference loop: the noise starts uniform in [0, init_scale) (or at
    ``init_noise`` for a warm start) and, at the start of every step, is clipped to
    +-eps and the protected image to [0, 1]. Unlike the reference, whose 20th
    update is never used, the last update is clipped and kept: 20 steps are 20
    updates. The clean image's ring edit does not depend on the noise, so it is
    computed once instead of at every step; the losses are the same.

    With ``config.eot``, the losses of every step (and so ``history``) are the mean over
    ``eot_samples`` transformations per image, drawn afresh at every step from
    ``generator`` (torch's global generator without one); all samples go through
    the inpainter in one batch.
    """
    cfg = config or IterativeConfig()
    task = task or prepare_task(inpainter, image, mask, target, cfg.dilation)
    if init_noise is None:
        init_noise = torch.rand(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        init_noise = init_noise * cfg.init_scale
    noise = init_noise.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([noise], lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
    transform = RandomTransforms(cfg.eot) if cfg.eot is not None and cfg.eot.enabled else None
    k, b = cfg.eot_samples, image.shape[0]
    many = repeat_task(task, k) if transform is not None and k > 1 else task

    def objective(protected: Tensor) -> dict[str, Tensor]:
        if transform is None:
            return protection_losses(inpainter, protected, task, cfg.weights)
        losses = protection_losses(inpainter, protected.repeat(k, 1, 1, 1), many, cfg.weights, transform, generator)
        return {name: value.view(k, b).mean(0) for name, value in losses.items()}

    history: dict[str, list[Tensor]] = {}
    for _ in range(cfg.steps + 1):
        with torch.no_grad():
            noise.clamp_(-cfg.eps, cfg.eps)
        protected = (task.image + noise).clamp(0, 1)
        last = len(next(iter(history.values()), [])) == cfg.steps
        with torch.set_grad_enabled(not last):
            losses = objective(protected)
        for name, value in losses.items():
            history.setdefault(name, []).append(value.detach())
        if last:
            break
        optimiser.zero_grad(set_to_none=True)
        # images are independent: summing keeps each image's gradient its own
        losses["total"].sum().backward()
        optimiser.step()

    protected = protected.detach()
    return IterativeResult(protected, (protected - task.image).detach(),
                           {k: torch.stack(v) for k, v in history.items()})
