"""The supervised terms of generator training: towards cached references, with no inpainter call.

Each is averaged over the batch's images that carry its reference (``has`` = 1): a batch
mixes cached entries with fresh random crops that have none.

Why the sign terms are a hinge on the pre-tanh output: the plain linearised objective ``mean(g * d) / eps``
(logged as ``train/linearised``; optimum -1) drives tanh into saturation: after 500 steps the noise sat at 0.99996
eps with a median |raw| of 8.3, its gradient vanished and the objective stalled at -0.5; the hinge stops pushing a
pixel once its sign is right by ``supervised_margin`` (tanh(2) = 0.96), which keeps the end-to-end stage's
gradient alive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
SUPERVISED_KINDS = ("mse", "sign", "gradient", "linearised")


def over_entries(per_sample: Tensor, has: Tensor) -> Tensor:
    """The mean of a per-sample term over the samples that carry its reference (``has`` = 1); 0 if none does."""
    has = has.to(per_sample.dtype)
    return (per_sample * has).sum() / has.sum().clamp_min(1)


def supervised_term(noise: Tensor, raw: Tensor | None, reference: Tensor, has: Tensor, kind: str, eps: float,
                    margin: float) -> Tensor:
    """A supervised term over the images that carry ``reference``, averaged over them.

    "mse": squared error to a teacher noise, in units of eps. "sign": hinge on the
    pre-tanh output towards the teacher's signs, ``relu(margin - sign(t) * raw)``.
    "gradient": the same towards ``-sign(g)``, weighted by |g| (normalised gradient).
    "linearised": ``mean(g * d) / eps``, the first-order objective (a metric; -1 at best).
    """
    if kind == "mse":
        per_pixel = (noise - reference).div(eps).pow(2)
    elif kind == "sign":
        per_pixel = torch.relu(margin - torch.sign(reference) * raw)
    elif kind == "gradient":
        per_pixel = reference.abs() * torch.relu(margin + torch.sign(reference) * raw)
    elif kind == "linearised":
        per_pixel = reference * noise / eps
    else:
        raise ValueError(f"kind must be one of {', '.join(SUPERVISED_KINDS)}, got {kind!r}")
    return over_entries(per_pixel.mean(dim=(1, 2, 3)), has)


def field_cosine(field: Tensor, reference: Tensor, has: Tensor) -> Tensor:
    """Mean cosine between the predicted field and ``-reference`` (a cached field is the gradient at layer k,
    the head takes its negation) over the images that carry one."""
    return over_entries(-F.cosine_similarity(field.flatten(1), reference.flatten(1), dim=1), has)
