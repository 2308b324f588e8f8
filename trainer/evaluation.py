"""Score protection methods side by side on the same images, masks and inpainter.

A *method* maps (images, masks) to protected images. Every method's output is
rounded to 8 bits within the noise bound, as saving a PNG does, then scored
with the protection losses against the unprotected images. The table reports
absolute metrics and each method's share of the reference method's gain (the
drop of the attack loss from no noise), with time per image and the speed-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from generator.protector import Protector
from generator.save import quantize_within_bound
from trainer.inpainter import Inpainter
from trainer.iterative import IterativeConfig, protect_iterative
from trainer.losses import prepare_task, protection_losses
from trainer.protection_metrics import protection_metrics, share_of_gain

Tensor = torch.Tensor
Method = Callable[[Tensor, Tensor], Tensor]


def no_protection() -> Method:
    return lambda image, mask: image


def generator_method(protector: Protector) -> Method:
    return protector.protect


def iterative_method(inpainter: Inpainter, config: IterativeConfig | None = None, seed: int = 0) -> Method:
    def protect(image: Tensor, mask: Tensor) -> Tensor:
        gen = torch.Generator(device=image.device).manual_seed(seed)
        return protect_iterative(inpainter, image, mask, config, generator=gen).protected
    return protect


@dataclass
class MethodScore:
    name: str
    seconds_per_image: float
    metrics: dict[str, Tensor] = field(default_factory=dict)  # per image
    protected: Tensor | None = None


def as_saved(protected: Tensor, original: Tensor, eps: float) -> Tensor:
    """What a PNG of ``protected`` holds once read back (8-bit, within the bound)."""
    rows = [torch.from_numpy(quantize_within_bound(p, o, eps)).permute(2, 0, 1) for p, o in zip(protected, original)]
    return torch.stack(rows).to(original) / 255


def score_methods(inpainter: Inpainter, images: Tensor, masks: Tensor, methods: dict[str, Method],
                  batch_size: int = 4, eps: float = 0.025) -> list[MethodScore]:
    """Run each method over the images in batches, time it, and score what a saved PNG would hold."""
    images = torch.round(images * 255) / 255  # the inputs a user has are 8-bit
    results = []
    for name, method in methods.items():
        outputs, seconds = [], 0.0
        for start in range(0, len(images), batch_size):
            x, m = images[start:start + batch_size], masks[start:start + batch_size]
            t0 = time.perf_counter()
            outputs.append(method(x, m).detach())
            seconds += time.perf_counter() - t0
        protected = as_saved(torch.cat(outputs), images, eps)
        results.append(MethodScore(name, seconds / len(images), protected=protected))
    for start in range(0, len(images), batch_size):
        x, m = images[start:start + batch_size], masks[start:start + batch_size]
        task = prepare_task(inpainter, x, m)
        with torch.no_grad():
            clean = protection_losses(inpainter, x, task)
            for result in results:
                p = result.protected[start:start + batch_size]
                metrics = protection_metrics(protection_losses(inpainter, p, task), p - x, clean)
                for k, v in metrics.items():
                    result.metrics[k] = torch.cat([result.metrics[k], v]) if k in result.metrics else v
    return results


def markdown_table(results: list[MethodScore], reference: str | None = None) -> str:
    """Mean metrics per method; with ``reference``, its share of the reference's gain and the speed-up."""
    ref = next((r for r in results if r.name == reference), None)
    header = ("| method | attack PSNR (dB) | success @20 dB | incp PSNR | hide PSNR | noise PSNR | L_inf "
              "| attack loss | share of gain | s / image | speed-up |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        m = {k: float(v.float().mean()) for k, v in r.metrics.items()}
        share = speed = "-"
        if ref is not None and r is not ref:
            share = f"{share_of_gain(r.metrics['attack_gain'], ref.metrics['attack_gain']):.2f}"
            speed = f"{ref.seconds_per_image / r.seconds_per_image:.0f}x" if r.seconds_per_image > 0 else "-"
        lines.append(f"| {r.name} | {m['attack_psnr']:.2f} | {m['success']:.0%} | {m['incp_psnr']:.2f} "
                     f"| {m['hide_psnr']:.2f} | {m['noise_psnr']:.2f} | {m['linf']:.4f} | {m['attack_loss']:.4f} "
                     f"| {share} | {r.seconds_per_image:.4f} | {speed} |")
    return "\n".join(lines)
