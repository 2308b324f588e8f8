"""Score protection methods side by side on the same images, masks and inpainter.

A *method* maps (images, masks) to protected images. Every method's output is
rounded to 8 bits within the noise bound, as saving a PNG does, then scored
with the protection losses against the unprotected images, optionally after a
transformation of the saved image (``trainer.objective.transforms``). Tables report
absolute metrics and each method's share of the reference method's gain (the
drop of the attack loss from no noise), with time per image and the speed-up:
a ratio of absolute losses can look fine with no noise at all, the gain cannot.

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
import numpy as np
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
from trainer.objective.metrics import SUCCESS_DB, protection_metrics, share_of_gain
from trainer.objective.transforms import Transform

Tensor = torch.Tensor
Method = Callable[[Tensor, Tensor], Tensor]
SSIM_WINDOW = 11
CONFIDENCE = 0.95


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


# --- aggregation and tables -----------------------------------------------------------------

@dataclass
class Summary:
    """Mean, median and a 95% Student-t interval of the mean (NaN bounds for fewer than two values)."""

    mean: float
    median: float
    low: float
    high: float


def summarise(values: Tensor, confidence: float = CONFIDENCE) -> Summary:
    from scipy import stats  # scipy comes with scikit-image; imported here to keep module import light

    v = values.detach().double().cpu().numpy()
    mean, median = float(v.mean()), float(np.median(v))
    if len(v) < 2:
        return Summary(mean, median, math.nan, math.nan)
    half = float(stats.t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return Summary(mean, median, mean - half, mean + half)


def paired_share_difference(gain: Tensor, baseline_gain: Tensor, teacher_gain: Tensor) -> Summary:
    """``share_of_gain(gain) - share_of_gain(baseline_gain)`` on the same samples, with a t interval over them.

    The samples' difficulty cancels in the per-sample differences, so two checkpoints whose shares differ by less
    than the spread across samples can still be told apart, or shown not to be.
    """
    return summarise((gain - baseline_gain) / teacher_gain.mean())


# metric key -> (column label, format of one value); the columns of the main table, in order
MAIN_METRICS: dict[str, tuple[str, str]] = {
    "attack_psnr": ("attack PSNR (dB)", ".2f"),
    "success": (f"success @{SUCCESS_DB:g} dB", ".0%"),
    "incp_psnr": ("incp PSNR (dB)", ".2f"),
    "hide_psnr": ("hide PSNR (dB)", ".2f"),
    "noise_psnr": ("noise PSNR (dB)", ".2f"),
    "ssim": ("SSIM", ".4f"),
    "linf": ("L_inf", ".4f"),
}
# the metrics that matter once the image has been transformed (noise PSNR would mostly measure the transform)
ROBUSTNESS_METRICS = ("attack_psnr", "success", "incp_psnr", "hide_psnr", "ssim")


SAVED = "png"  # the condition name of ``MethodScore.metrics``: the saved PNG itself, untouched


def _under(result: MethodScore, condition: str) -> dict[str, Tensor]:
    return result.metrics if condition == SAVED else result.conditions[condition]


def _share(metrics: dict[str, Tensor], reference: dict[str, Tensor] | None) -> float:
    if reference is None or "attack_gain" not in metrics:
        return math.nan
    return share_of_gain(metrics["attack_gain"], reference["attack_gain"])


def _find(results: Sequence[MethodScore], name: str | None) -> MethodScore | None:
    return next((r for r in results if r.name == name), None)


def main_records(results: Sequence[MethodScore], reference: str | None = None) -> list[dict[str, float | str]]:
    """One row per method: mean/median/CI of every main metric, share of the reference's gain, time and speed-up."""
    ref = _find(results, reference)
    records = []
    for r in results:
        row: dict[str, float | str] = {"method": r.name}
        for key in MAIN_METRICS:
            s = summarise(r.metrics[key])
            row.update({f"{key}_mean": s.mean, f"{key}_median": s.median, f"{key}_low": s.low,
                        f"{key}_high": s.high})
        row["share_of_gain"] = _share(r.metrics, ref.metrics if ref else None)
        row["seconds_per_image"] = r.seconds_per_image
        row["images_per_second"] = r.images_per_second
        speed_up = math.nan
        if ref is not None and r is not ref and r.name != "none" and r.seconds_per_image > 0:
            speed_up = ref.seconds_per_image / r.seconds_per_image
        row["speed_up"] = speed_up
        records.append(row)
    return records


def condition_records(results: Sequence[MethodScore], condition: str, reference: str | None = None,
                      relative_to: str = SAVED) -> list[dict[str, float | str]]:
    """One row per method under ``condition`` (a key of ``conditions``, or SAVED for the saved PNG itself).

    The share of gain is relative to the reference's gain under ``relative_to``: by
    default its gain on the untouched PNG, so that it tells how much survives.
    """
    ref = _find(results, reference)
    records = []
    for r in results:
        metrics = _under(r, condition)
        row: dict[str, float | str] = {"condition": condition, "method": r.name}
        row.update({f"{key}_mean": float(metrics[key].float().mean()) for key in ROBUSTNESS_METRICS})
        row["share_of_gain"] = _share(metrics, _under(ref, relative_to) if ref else None)
        records.append(row)
    return records


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float, spec: str) -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


def _mean_ci(row: dict, key: str, spec: str) -> str:
    mean, low, high = row[f"{key}_mean"], row[f"{key}_low"], row[f"{key}_high"]
    if spec.endswith("%") or not math.isfinite(high - low):
        return _fmt(mean, spec)
    return f"{_fmt(mean, spec)} ± {_fmt((high - low) / 2, spec)}"


def markdown_table(results: Sequence[MethodScore], reference: str | None = None) -> str:
    """Mean metrics per method (± the 95% t half-width); with ``reference``, its share of the gain and the speed-up."""
    header = [label for label, _ in MAIN_METRICS.values()]
    header = ["method", *header, "share of gain", "s / image", "images / s", "speed-up"]
    rows = []
    for row in main_records(results, reference):
        cells = [str(row["method"])] + [_mean_ci(row, key, spec) for key, (_, spec) in MAIN_METRICS.items()]
        speed = _fmt(row["speed_up"], ".1f")
        cells += [_fmt(row["share_of_gain"], ".2f"), _fmt(row["seconds_per_image"], ".3g"),
                  _fmt(row["images_per_second"], ".3g"), speed if speed == "-" else f"{speed}x"]
        rows.append(cells)
    return markdown(header, rows)


def condition_table(results: Sequence[MethodScore], conditions: Sequence[str], reference: str | None = None,
                    relative_to: str = SAVED) -> str:
    """Long-form table of the robustness metrics of every method under every condition."""
    header = ["condition", "method", *(MAIN_METRICS[k][0] for k in ROBUSTNESS_METRICS), "share of gain"]
    rows = []
    for condition in conditions:
        for row in condition_records(results, condition, reference, relative_to):
            rows.append([condition, str(row["method"]),
                         *(_fmt(row[f"{k}_mean"], MAIN_METRICS[k][1]) for k in ROBUSTNESS_METRICS),
                         _fmt(row["share_of_gain"], ".2f")])
    return markdown(header, rows)


def spread_table(results: Sequence[MethodScore]) -> str:
    """Mean, median and 95% t interval of every main metric of every method."""
    rows = []
    for row in main_records(results):
        for key, (label, spec) in MAIN_METRICS.items():
            interval = f"[{_fmt(row[f'{key}_low'], spec)}, {_fmt(row[f'{key}_high'], spec)}]"
            rows.append([str(row["method"]), label, _fmt(row[f"{key}_mean"], spec),
                         _fmt(row[f"{key}_median"], spec), interval])
    return markdown(["method", "metric", "mean", "median", f"{CONFIDENCE:.0%} t interval"], rows)
