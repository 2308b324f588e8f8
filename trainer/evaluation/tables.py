"""Aggregate scored methods into summaries, records and Markdown tables.

Every table starts from ``trainer.evaluation.scoring.MethodScore``: per-image metrics of the saved PNG (and of
the PNG under other conditions). Means come with a 95% Student-t interval over the images; with a reference
method, each row also gets its share of the reference's gain (the drop of the attack loss from no noise) and
its speed-up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trainer.evaluation.scoring import MethodScore
from trainer.objective.metrics import SUCCESS_DB, share_of_gain

Tensor = torch.Tensor
CONFIDENCE = 0.95


@dataclass
class Summary:
    """Mean, median and a 95% Student-t interval of the mean (NaN bounds for fewer than two values)."""

    mean: float
    median: float
    low: float
    high: float


def summarise(values: Tensor, confidence: float = CONFIDENCE,
              limits: tuple[float, float] = (-math.inf, math.inf)) -> Summary:
    """``limits``: the values' range, which the interval is clipped to (a mean cannot leave it: an SSIM
    interval reached 1.53 on two samples)."""
    from scipy import stats  # scipy comes with scikit-image; imported here to keep module import light

    v = values.detach().double().cpu().numpy()
    mean, median = float(v.mean()), float(np.median(v))
    if len(v) < 2:
        return Summary(mean, median, math.nan, math.nan)
    half = float(stats.t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return Summary(mean, median, max(mean - half, limits[0]), min(mean + half, limits[1]))


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
# the range each main metric's values lie in (PSNRs of [0, 1] images are >= 0; PaintGuard caps them at 100 dB)
LIMITS: dict[str, tuple[float, float]] = {"success": (0.0, 1.0), "ssim": (-1.0, 1.0), "linf": (0.0, 1.0),
                                          **{k: (0.0, 100.0) for k in MAIN_METRICS if k.endswith("_psnr")}}
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
            s = summarise(r.metrics[key], limits=LIMITS[key])
            row.update({f"{key}_mean": s.mean, f"{key}_median": s.median, f"{key}_low": s.low,
                        f"{key}_high": s.high})
        row["share_of_gain"] = _share(r.metrics, ref.metrics if ref else None)
        timed = r.name != "none"  # no protection runs nothing: its "time" is a function call's
        row["seconds_per_image"] = r.seconds_per_image if timed else math.nan
        row["images_per_second"] = r.images_per_second if timed else math.nan
        speed_up = math.nan
        if ref is not None and r is not ref and timed and r.seconds_per_image > 0:
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
    # the t interval's half-width: the side the metric's range did not clip
    return f"{_fmt(mean, spec)} ± {_fmt(max(mean - low, high - mean), spec)}"


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
