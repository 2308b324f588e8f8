"""The generator's optimiser: AdamW at a constant rate, or lowered along half a cosine per step."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Iterable

import torch


def cosine_decay(step: int, steps: int, final: float) -> float:
    """The learning rate's factor at ``step``: half a cosine from 1 down to ``final`` over ``steps``, then flat."""
    progress = min(step / steps, 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_decay(lr: float, decay_steps: int, lr_final: float) -> None:
    """Refuse a schedule that would not lower the rate from ``lr`` to ``lr_final``."""
    if decay_steps < 0 or not 0.0 <= lr_final <= lr:
        raise ValueError(f"need lr_decay_steps >= 0 and 0 <= lr_final <= lr, got {decay_steps} and {lr_final}")


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, decay_steps: int = 0,
          lr_final: float = 0.0) -> torch.optim.Optimizer | dict[str, Any]:
    """AdamW for ``configure_optimizers``; with ``decay_steps`` > 0, with a per-step ``LambdaLR`` down to
    ``lr_final`` (a resumed fit restores its step: trainer.training.lightning_cli.ConfigLearningRates)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if not decay_steps:
        return optimizer
    factor = partial(cosine_decay, steps=decay_steps, final=lr_final / lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
