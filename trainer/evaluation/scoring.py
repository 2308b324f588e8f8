"""Score protection methods side by side on the same images, masks and inpainter.

A *method* maps (images, masks) to protected images. Every method's output is
rounded to 8 bits within the noise bound, as saving a PNG does, then scored
with the protection losses against the unprotected images, optionally after a
transformation of the saved image (``trainer.objective.transforms``). Its tables
(``trainer.evaluation.tables``) report absolute metrics and each method's share of
the reference method's gain (the drop of the attack loss from no noise), with time
per image and the speed-up: a ratio of absolute losses can look fine with no noise
at all, the gain cannot.

Timing: one untimed warm-up call on the first image, then every batch is timed
(``repeats`` times); the time per image is the median over those calls divided by
their batch size, on the device the method runs on; throughput is images over the
total timed seconds.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import kornia
import torch

from generator.precision import autocast
from generator.protector import Protector
from generator.save import quantize_within_bound
from generator.target import target_colour
from trainer.inpainting.inpainter import Inpainter
from trainer.objective.fgsm import protect_fgsm
from trainer.objective.field_steps import FIELD_LR, NO_FIELD, field_steps, has_field
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import prepare_task, protection_losses
from trainer.objective.metrics import protection_metrics
from trainer.objective.transforms import Transform

Tensor = torch.Tensor
Method = Callable[[Tensor, Tensor], Tensor]
SSIM_WINDOW = 11


# --- methods --------------------------------------------------------------------------------

def no_protection() -> Method:
    return lambda image, mask: image


def generator_method(protector: Protector) -> Method:
    return protector.protect


def iterative_method(inpainter: Inpainter | Sequence[Inpainter], config: IterativeConfig | None = None,
                     seed: int = 0) -> Method:
    """The optimiser against one inpainter, or against several at once (an ensemble)."""
    def protect(image: Tensor, mask: Tensor) -> Tensor:
        gen = torch.Generator(device=image.device).manual_seed(seed)
        return protect_iterative(inpainter, image, mask, config, generator=gen).protected
    return protect


def autocast_method(method: Method, dtype: torch.dtype) -> Method:
    """``method`` with the convolutions of whatever it runs (the inpainter's, forwards and backwards) in ``dtype``
    (``generator.precision.autocast``: unchanged for float32); the result back in float32."""
    def protect(image: Tensor, mask: Tensor) -> Tensor:
        with autocast(image.device, dtype):
            return method(image, mask).float()
    return protect


def fgsm_method(inpainter: Inpainter, eps: float = 0.025) -> Method:
    """One signed gradient step of the total loss (``trainer.objective.fgsm``)."""
    return lambda image, mask: protect_fgsm(inpainter, image, mask, eps)


def colour_push_method(eps: float = 0.025) -> Method:
    """No network, no inpainter: every pixel moved by eps towards the target colour, ``eps * sign(t - x)``.

    The closed-form floor a learned generator must beat: it already steers the fill part of the way.
    """
    def protect(image: Tensor, mask: Tensor) -> Tensor:
        target = target_colour(image).reshape(-1, 3, 1, 1).to(image)
        return (image + eps * torch.sign(target - image)).clamp(0, 1)
    return protect


def hybrid_method(protector: Protector, inpainter: Inpainter, steps: int,
                  config: IterativeConfig | None = None) -> Method:
    """The generator's noise as the optimiser's starting point, then ``steps`` optimiser steps."""
    cfg = replace(config or IterativeConfig(), steps=steps)

    def protect(image: Tensor, mask: Tensor) -> Tensor:
        # clone: the generator runs under inference_mode, and autograd cannot save inference tensors
        init = protector.noise(image, mask).to(image).clone()
        with protector.autocast():  # the steps in the generator's precision, as Protector.protect takes them
            return protect_iterative(inpainter, image, mask, cfg, init_noise=init).protected
    return protect


def refine_method(protector: Protector, inpainter: Inpainter, steps: int, lr: float = FIELD_LR) -> Method:
    """"refine": an encoder-gradient generator's noise after ``steps`` optimiser steps on its own field
    (``trainer.objective.field_steps``)."""
    if not has_field(protector.net):
        raise ValueError(NO_FIELD)

    def protect(image: Tensor, mask: Tensor) -> Tensor:
        with torch.inference_mode(False), torch.enable_grad(), protector.autocast():
            noise = field_steps(protector.net, inpainter, image.clone(), mask.clone(), steps, lr)
        return (image + noise).clamp(0, 1)
    return protect


# --- running and timing ---------------------------------------------------------------------

def as_saved(protected: Tensor, original: Tensor, eps: float) -> Tensor:
    """What a PNG of ``protected`` holds once read back (8-bit, within the bound)."""
    rows = [torch.from_numpy(quantize_within_bound(p, o, eps)).permute(2, 0, 1) for p, o in zip(protected, original)]
    return torch.stack(rows).to(original) / 255


def batches(images: Sequence[Tensor], batch_size: int) -> list[list[int]]:
    """Indices of consecutive images in groups of at most ``batch_size`` that share one shape (so they stack)."""
    groups: list[list[int]] = []
    for i, image in enumerate(images):
        if groups and len(groups[-1]) < batch_size and images[groups[-1][0]].shape == image.shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class MethodRun:
    """One method's protected images (as saved, on the CPU) and its timed calls."""

    name: str
    protected: list[Tensor]  # per image (3,H,W)
    image_seconds: list[float]  # per image: its batch's time / batch size, averaged over repeats
    call_seconds: list[float]  # per timed call, divided by its batch size
    total_seconds: float  # all timed calls
    timed_images: int  # images over all timed calls

    @classmethod
    def untimed(cls, name: str, protected: list[Tensor]) -> MethodRun:
        """A run whose images were made elsewhere (e.g. read from a cache): no time of it belongs to this run."""
        return cls(name, protected, [math.nan] * len(protected), [math.nan], math.nan, 0)

    @property
    def seconds_per_image(self) -> float:
        return statistics.median(self.call_seconds)

    @property
    def images_per_second(self) -> float:
        if not self.timed_images:
            return math.nan
        return self.timed_images / self.total_seconds if self.total_seconds > 0 else math.inf


def run_method(name: str, method: Method, images: Sequence[Tensor], masks: Sequence[Tensor], batch_size: int = 4,
               repeats: int = 1, eps: float = 0.025, device: str | torch.device = "cpu",
               warmup: bool = True) -> MethodRun:
    """Protect every image in batches on ``device``: an untimed warm-up call, then each batch timed ``repeats`` times.

    Methods are deterministic (seeded), so repeated calls return the same images; the last one is kept.
    ``warmup=False`` skips the warm-up, for runs whose time is not reported.
    """
    device = torch.device(device)
    groups = batches(images, batch_size)
    # warm-up on one image: first-call costs (allocator, kernel selection, lazy init) without a batch's price
    if warmup:
        method(images[0][None].to(device), masks[0][None].to(device))
    protected: list[Tensor] = []
    image_seconds, call_seconds, total = [], [], 0.0
    for idx in groups:
        x = torch.stack([images[i] for i in idx]).to(device)
        m = torch.stack([masks[i] for i in idx]).to(device)
        times = []
        for _ in range(repeats):
            _synchronize(device)
            start = time.perf_counter()
            out = method(x, m)
            _synchronize(device)
            times.append((time.perf_counter() - start) / len(idx))
        protected.extend(as_saved(out.detach().cpu(), x.cpu(), eps).unbind())
        image_seconds.extend([statistics.fmean(times)] * len(idx))
        call_seconds.extend(times)
        total += sum(times) * len(idx)
    return MethodRun(name, protected, image_seconds, call_seconds, total, len(images) * repeats)


# --- scoring --------------------------------------------------------------------------------

@dataclass
class MethodScore:
    """A method's per-image metrics on the saved PNG, its timing, and its metrics under other conditions."""

    name: str
    seconds_per_image: float
    metrics: dict[str, Tensor] = field(default_factory=dict)  # per image
    protected: Tensor | None = None
    images_per_second: float = math.nan
    conditions: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # e.g. "jpeg75" -> per-image metrics


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image mean SSIM (kornia, 11 px Gaussian window) of two batches in [0,1]."""
    return kornia.metrics.ssim(a, b, SSIM_WINDOW).mean(dim=(1, 2, 3))


@torch.no_grad()
def score_runs(inpainter: Inpainter, images: Sequence[Tensor], masks: Sequence[Tensor], runs: Sequence[MethodRun],
               transform: Transform | None = None, batch_size: int = 4, seed: int = 0,
               device: str | torch.device = "cpu", editor_mask: Callable[[Tensor], Tensor] | None = None
               ) -> dict[str, dict[str, Tensor]]:
    """Per-image metrics (method name -> metric -> (N,)) of every run's protected images against ``inpainter``.

    With ``transform``, the protected images and the unprotected ones (the baseline of the gain) are transformed
    first; random transforms draw the same values for every method (one seeded generator per batch and call). The
    target colour, masks and the clean ring edit always come from the original image. With ``editor_mask``
    (``trainer.evaluation.editor_masks``), the edits are of the mask it makes of each protected one: attack on
    it, incp on its dilation, hide on its ring.
    """
    out: dict[str, dict[str, list[Tensor]]] = {run.name: {} for run in runs}
    for b, idx in enumerate(batches(images, batch_size)):
        x = torch.stack([images[i] for i in idx]).to(device)
        m = torch.stack([masks[i] for i in idx]).to(device)

        def attacked(batch: Tensor) -> Tensor:
            if transform is None:
                return batch
            return transform(batch, generator=torch.Generator(device=batch.device).manual_seed(seed + b))

        task = prepare_task(inpainter, x, m if editor_mask is None else editor_mask(m))
        clean = protection_losses(inpainter, attacked(x), task)
        for run in runs:
            p = attacked(torch.stack([run.protected[i] for i in idx]).to(device))
            metrics = protection_metrics(protection_losses(inpainter, p, task), p - x, clean)
            metrics["ssim"] = ssim(p, x)
            for k, v in metrics.items():
                out[run.name].setdefault(k, []).append(v.cpu())
    return {name: {k: torch.cat(v) for k, v in metrics.items()} for name, metrics in out.items()}


def score_methods(inpainter: Inpainter, images: Tensor, masks: Tensor, methods: dict[str, Method],
                  batch_size: int = 4, eps: float = 0.025) -> list[MethodScore]:
    """Run each method over the images in batches, time it, and score what a saved PNG would hold."""
    images = torch.round(images * 255) / 255  # the inputs a user has are 8-bit
    xs, ms = list(images.unbind()), list(masks.unbind())
    device = images.device
    runs = [run_method(name, method, xs, ms, batch_size, eps=eps, device=device) for name, method in methods.items()]
    metrics = score_runs(inpainter, xs, ms, runs, batch_size=batch_size, device=device)
    return [MethodScore(r.name, r.seconds_per_image, metrics[r.name], torch.stack(r.protected).to(images),
                        r.images_per_second) for r in runs]
