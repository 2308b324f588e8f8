"""The protection objective against several frozen inpainters at once (an ensemble), built on ``protection_losses``.

A protected photo is edited with whatever inpainter the editor has. Attacking several
models at once is the usual way to make a perturbation transfer to models it was not
made against (Markpainting, ICML 2021). The ensemble objective is the mean over
members of each member's own total loss; the target colour and the masks are shared,
while the hide reference f_i(x, E'(m)) is computed per member (each model edits the
clean ring its own way, and the noise must leave each of those edits alone).

Two ways to combine the members per step or batch (``ENSEMBLE_MODES``):

- ``"mean"``: every member, every time (the exact ensemble gradient; K inpainter
  passes per step for K members);
- ``"random"``: one member drawn per call (one pass per step: an unbiased, noisier
  estimate of the same gradient, cheaper per step).

Callers: the 20-step optimiser (``trainer.objective.iterative``) and, through
``ensemble_losses``, generator training against several inpainters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from trainer.objective.losses import (
    LossWeights,
    ProtectionTask,
    TaskTransform,
    prepare_task,
    protection_losses,
    repeat_task,
    select_task,
)

Tensor = torch.Tensor
Inpainters = nn.Module | Sequence[nn.Module]
ENSEMBLE_MODES = ("mean", "random")

__all__ = ["ENSEMBLE_MODES", "EnsembleTask", "as_members", "as_ensemble_task", "prepare_ensemble_task",
           "draw_member", "ensemble_losses"]


def as_members(inpainters: Inpainters) -> list[nn.Module]:
    """One inpainter or a sequence of them, as a non-empty list."""
    if isinstance(inpainters, nn.Module) and not isinstance(inpainters, nn.ModuleList):
        return [inpainters]
    members = list(inpainters) if isinstance(inpainters, (list, tuple, nn.ModuleList)) else [inpainters]
    if not members:
        raise ValueError("an ensemble needs at least one inpainter")
    for member in members:  # a name failed with "'str' object is not callable"
        if not isinstance(member, nn.Module):
            raise TypeError(f"the inpainter must be a module (trainer.load_inpainter loads one by name), got "
                            f"{type(member).__name__}")
    return members


@dataclass
class EnsembleTask:
    """One ``ProtectionTask`` per member: the same image, masks and target, each with its member's clean ring edit."""

    tasks: list[ProtectionTask]

    # the shared parts, for code that treats the ensemble like one task
    @property
    def image(self) -> Tensor:
        return self.tasks[0].image

    @property
    def mask(self) -> Tensor:
        return self.tasks[0].mask

    @property
    def dilated(self) -> Tensor:
        return self.tasks[0].dilated

    @property
    def ring(self) -> Tensor:
        return self.tasks[0].ring

    @property
    def target(self) -> Tensor:
        return self.tasks[0].target

    def repeat(self, times: int) -> "EnsembleTask":
        """Every member's task with its batch repeated ``times`` times (EOT samples)."""
        return EnsembleTask([repeat_task(t, times) for t in self.tasks])

    def select(self, index: Tensor | Sequence[int]) -> "EnsembleTask":
        """The task of some of the batch's images, for every member."""
        return EnsembleTask([select_task(t, index) for t in self.tasks])


@torch.no_grad()
def prepare_ensemble_task(inpainters: Inpainters, image: Tensor, mask: Tensor, target: Tensor | None = None,
                          dilation: int = 17) -> EnsembleTask:
    """Masks and target once, and the clean ring edit f_i(x, E'(m)) of every member."""
    members = as_members(inpainters)
    first = prepare_task(members[0], image, mask, target, dilation)
    rest = [replace(first, clean_ring_fill=f(first.image, first.ring)) for f in members[1:]]
    return EnsembleTask([first, *rest])


def as_ensemble_task(task: ProtectionTask | EnsembleTask, members: int) -> EnsembleTask:
    """A task for ``members`` inpainters; a plain ``ProtectionTask`` is accepted for a single inpainter."""
    if isinstance(task, ProtectionTask):
        task = EnsembleTask([task])
    if len(task.tasks) != members:
        raise ValueError(f"the task was prepared for {len(task.tasks)} inpainter(s), not {members}")
    return task


def draw_member(count: int, generator: torch.Generator | None = None) -> int:
    """A uniformly drawn member index (from ``generator`` when given, so that a seeded run repeats)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(count, (1,), generator=generator, device=device))


class _Replay:
    """A transformation that replays one draw: every member sees the same edited image, as an editor's one edit."""

    def __init__(self, transform: TaskTransform, params: Any) -> None:
        self.transform, self.params = transform, params

    def sample(self, image: Tensor, generator: torch.Generator | None = None) -> Any:
        return self.params

    def apply(self, image: Tensor, params: Any) -> Tensor:
        return self.transform.apply(image, params)

    def apply_mask(self, mask: Tensor, params: Any) -> Tensor:
        return self.transform.apply_mask(mask, params)


def ensemble_losses(inpainters: Inpainters, protected: Tensor, task: ProtectionTask | EnsembleTask,
                    weights: LossWeights | None = None, transform: TaskTransform | None = None,
                    generator: torch.Generator | None = None, members: Sequence[int] | None = None,
                    eot_samples: int = 1, backward: bool = False,
                    reference: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """Per-image attack, incp, hide and total losses (each (B,)), averaged over the ensemble's members.

    Each member's losses are ``protection_losses`` against that member with its own
    hide reference. ``members`` restricts the mean to those indices (``draw_member``
    for the "random" mode); None means all. With ``transform``, ``eot_samples``
    transformations are drawn per image, each shared by all members, and each
    member's losses are the mean over them.

    ``backward=True`` back-propagates each member's ``total.sum() / len(members)`` as
    soon as it is computed (images are independent, so summing keeps each image's
    gradient its own), which holds one member's graph in memory at a time instead of
    all of them; the gradient is that of the mean, and the returned losses are detached.
    ``reference``: output distillation's target fills (``protection_losses``), one inpainter only.
    """
    nets = as_members(inpainters)
    task = as_ensemble_task(task, len(nets))
    chosen = list(range(len(nets))) if members is None else list(members)
    if not chosen:
        raise ValueError("ensemble_losses needs at least one member")
    if reference is not None and (len(nets) > 1 or backward):
        raise ValueError("output distillation's reference fills are one inpainter's, and its term is not in total: "
                         "use it without an ensemble and without backward")
    b, k = protected.shape[0], eot_samples if transform is not None else 1
    tasks = task.repeat(k).tasks if k > 1 else task.tasks
    inputs = protected.repeat(k, 1, 1, 1) if k > 1 else protected
    shared = transform
    if transform is not None:
        shared = _Replay(transform, transform.sample(inputs, generator))
    # with backward, each member back-propagates into a leaf that stands for the protected image: the graph
    # that made it (clamp, the generator) is then walked once, with the summed gradient
    leaf = inputs.detach().requires_grad_(True) if backward else inputs
    mean: dict[str, Tensor] = {}
    for i in chosen:
        losses = protection_losses(nets[i], leaf, tasks[i], weights, shared, reference=reference)
        if k > 1:
            losses = {name: value.view(k, b).mean(0) for name, value in losses.items()}
        if backward:
            (losses["total"].sum() / len(chosen)).backward()
            losses = {name: value.detach() for name, value in losses.items()}
        for name, value in losses.items():
            mean[name] = mean[name] + value if name in mean else value
    if backward and inputs.requires_grad:
        inputs.backward(leaf.grad)
    return {name: value / len(chosen) for name, value in mean.items()}
