"""The paper's per-image protection: 20 Adam steps on a bounded noise.

Used twice in PaintGuard: as the teacher during generator training and as the
baseline every result is compared with. Given several inpainters, it attacks them
all at once (``trainer.objective.ensemble``: the mean of the per-model losses).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainer.objective.ensemble import (
    ENSEMBLE_MODES,
    EnsembleTask,
    as_ensemble_task,
    as_members,
    draw_member,
    ensemble_losses,
    prepare_ensemble_task,
)
from generator.convert import check_batch, check_target
from trainer.objective.eot import EOTConfig, RandomTransforms
from trainer.objective.losses import LossWeights, ProtectionTask

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
    # several inpainters (trainer/objective/ensemble.py): "mean" steps on the mean of every member's loss,
    # "random" on one member drawn per step (from the generator); one inpainter ignores it
    ensemble: str = "mean"

    def __post_init__(self) -> None:
        self.steps = _whole(self.steps, "steps", 0)
        self.eot_samples = _whole(self.eot_samples, "eot_samples", 1)
        self.dilation = _whole(self.dilation, "dilation", 1)
        for name, high in (("eps", 1), ("lr", math.inf), ("adam_eps", math.inf)):
            value = _real(getattr(self, name), name)
            if not 0 < value <= high:
                raise ValueError(f"{name} must be positive{f' and at most {high}' if high < math.inf else ''}, "
                                 f"got {value!r}")
            setattr(self, name, value)
        self.init_scale = _real(self.init_scale, "init_scale")
        if not 0 <= self.init_scale <= self.eps:
            raise ValueError(f"init_scale must be in [0, eps], got {self.init_scale!r}")
        betas = tuple(_real(b, "betas") for b in self.betas) if isinstance(self.betas, (tuple, list)) else ()
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = betas
        self.eot = EOTConfig.coerce(self.eot)
        if self.ensemble not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble must be one of {', '.join(ENSEMBLE_MODES)}, got {self.ensemble!r}")


def _whole(value: Any, name: str, least: int) -> int:
    """``value`` as an int (numpy's too), refused unless a whole number >= ``least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
    return int(value)


def _real(value: Any, name: str) -> float:
    """``value`` as a finite float, refused otherwise (a string, NaN or inf would fail or spread NaN later)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass
class IterativeResult:
    protected: Tensor  # (B,3,H,W) in [0,1]
    noise: Tensor  # (B,3,H,W), |noise| <= eps
    history: dict[str, Tensor]  # each (steps + 1, B): losses at every step, then of the returned result


def protect_iterative(
    inpainter: nn.Module | Sequence[nn.Module],
    image: Tensor,
    mask: Tensor,
    config: IterativeConfig | None = None,
    target: Tensor | None = None,
    init_noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    task: ProtectionTask | EnsembleTask | None = None,
) -> IterativeResult:
    """Optimise a protective noise for a batch of images, each with its own mask and target.

    ``image`` is (B,3,H,W) in [0,1], ``mask`` (B,1,H,W). Follows the reference loop: the noise
    starts uniform in [0, init_scale), drawn from ``generator`` (torch's global generator without
    one: pass a seeded ``torch.Generator`` for repeatable results), or at ``init_noise`` for
    a warm start, and, at the start of every step, is clipped to
    +-eps and the protected image to [0, 1]. Unlike the reference, whose 20th
    update is never used, the last update is clipped and kept: 20 steps are 20
    updates. The clean image's ring edit does not depend on the noise, so it is
    computed once instead of at every step; the losses are the same.

    With ``config.eot``, the losses of every step (and so ``history``) are the mean over
    ``eot_samples`` transformations per image, drawn afresh at every step from
    ``generator`` (torch's global generator without one); all samples go through
    the inpainter in one batch.

    With a sequence of inpainters, every step minimises the mean of their losses
    (``config.ensemble == "mean"``; each member's graph is back-propagated and freed
    in turn, so memory stays that of one member) or the loss of one member drawn per
    step from ``generator`` ("random"); ``history`` holds the losses that were
    minimised, and its last entry is always the mean over all members. ``task`` is
    then an ``EnsembleTask`` (``prepare_ensemble_task``).

    An image whose mask is empty comes back unchanged (zero noise).
    """
    cfg = config or IterativeConfig()
    if not isinstance(cfg, IterativeConfig):
        raise TypeError(f"config must be an IterativeConfig, got {type(cfg).__name__}")
    check_batch(image, mask)  # a 0..255 image came back almost white, a float64 one failed deep in a convolution
    image, mask = image.detach(), (mask.detach() != 0).to(image.dtype)  # the caller's tensors get no gradient
    if target is not None:
        target = check_target(target, len(image)).to(image)
    if init_noise is not None:
        if not isinstance(init_noise, torch.Tensor) or not init_noise.is_floating_point():
            raise TypeError(f"init_noise must be a float tensor, got {getattr(init_noise, 'dtype', type(init_noise))}")
        if not torch.isfinite(init_noise).all():
            raise ValueError("init_noise holds NaN or inf values")
        init_noise = init_noise.detach().to(image)
    members = as_members(inpainter)
    weights = next(members[0].parameters(), None)
    if weights is not None and weights.is_floating_point() and image.dtype != weights.dtype:
        raise ValueError(f"the image is {image.dtype} but the inpainter runs in {weights.dtype}; pass "
                         f"image.to({weights.dtype})")
    if init_noise is not None and init_noise.shape != image.shape:
        raise ValueError(f"init_noise {tuple(init_noise.shape)} does not match image {tuple(image.shape)}")
    task = as_ensemble_task(task or prepare_ensemble_task(members, image, mask, target, cfg.dilation), len(members))
    if init_noise is None:
        init_noise = torch.rand(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        init_noise = init_noise * cfg.init_scale
    # an empty mask protects nothing: that image keeps a zero noise and comes back unchanged, as from Protector
    used = (mask != 0).flatten(1).any(1).to(image.dtype)[:, None, None, None]
    noise = (init_noise.detach() * used).requires_grad_(True)
    if not used.all():
        noise.register_hook(lambda grad: grad * used)  # Adam moves nothing whose gradient stays zero
    optimiser = torch.optim.Adam([noise], lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
    transform = RandomTransforms(cfg.eot) if cfg.eot is not None and cfg.eot.enabled else None
    random_member = cfg.ensemble == "random" and len(members) > 1

    # the sum rounds by up to half an ulp: the returned noise keeps this far inside the bound, so that
    # |protected - image| <= eps holds exactly (it reached 0.025000006 in float32)
    inside = cfg.eps - torch.finfo(image.dtype).eps
    history: dict[str, list[Tensor]] = {}
    for step in range(cfg.steps + 1):
        last = step == cfg.steps
        bound = inside if last else cfg.eps
        with torch.no_grad():
            noise.clamp_(-bound, bound)
        protected = (task.image + noise).clamp(0, 1)
        chosen = [draw_member(len(members), generator)] if random_member and not last else None
        if not last:
            optimiser.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(not last):
            # backward inside: images are independent, so summing their totals keeps each image's gradient its own
            losses = ensemble_losses(members, protected, task, cfg.weights, transform, generator, chosen,
                                     cfg.eot_samples, backward=not last)
        for name, value in losses.items():
            history.setdefault(name, []).append(value.detach())
        if last:
            break
        optimiser.step()

    protected = protected.detach()
    return IterativeResult(protected, (protected - task.image).detach(),
                           {k: torch.stack(v) for k, v in history.items()})
