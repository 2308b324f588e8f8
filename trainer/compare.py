"""``paintguard compare --config CONFIG --out OUTDIR``: protection methods side by side.

Runs no protection, the 20-step optimiser, the one-pass generator and hybrids
(the generator's noise refined by k optimiser steps) on the same images and
masks, and scores what a saved PNG of each holds: against the attacked
inpainter, after the transformations of ``trainer.transforms`` (JPEG, resizing,
blur, noise), and optionally against a second "transfer" inpainter the
generator was not trained against. Writes OUTDIR/report.md, OUTDIR/per_image.csv
and OUTDIR/figures/*.png and prints the tables; with ``wandb: true`` the tables
and figures also go to a W&B run (offline unless an account is configured).
See configs/compare/lama-tiny.yaml for every option.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import time
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import torch
import yaml

from generator.cli_parser import ArgumentParser
from generator.io import read_image, read_mask
from generator.save import atomic_write
from generator.protector import Protector
from trainer.data import FixedCropDataset, list_images, sample_images
from trainer.evaluation import (ROBUSTNESS_METRICS, SAVED, Method, MethodRun, MethodScore, condition_records,
                                condition_table, generator_method, hybrid_method, iterative_method, main_records,
                                markdown_table, no_protection, run_method, score_runs, spread_table,
                                summarise)
from trainer.inpainter import Inpainter, load_inpainter
from trainer.iterative import IterativeConfig
from trainer.masks import find_image_mask_pairs
from trainer.protection_metrics import SUCCESS_DB
from trainer.robustness import EOTConfig
from trainer.transforms import TRANSFORMS, get_transform

Tensor = torch.Tensor
EPS = IterativeConfig().eps
SAMPLE_SETS = {"sample-val": "val", "sample-train": "train", "sample-all": "all"}
TRANSFER = "transfer"  # the condition name of the scores against the transfer inpainter
GRID_COLUMNS = ("original", "protected", "noise x20", "clean inpainting", "protected inpainting")


# --- configuration --------------------------------------------------------------------------

class ConfigError(ValueError):
    """A compare configuration that is malformed or asks for something impossible."""


@dataclass
class MaskConfig:
    """kind "seeded": LaMa-style masks from ``seeded_masks`` on ``size`` px centre crops;
    kind "files": the masks beside each image, LaMa's ``NAME{suffix}*.png``, at the image's own size."""

    kind: str = "seeded"
    size: int = 256
    seed: int = 0
    per_image: int = 1
    suffix: str = "_mask"


@dataclass
class NoneSpec:
    """No noise: the row every gain is measured from."""


@dataclass
class OptimiserSpec:
    steps: int = 20


@dataclass
class OptimiserEOTSpec:
    """The optimiser averaging its loss over ``samples`` random transformations per step (the fair baseline of a
    robust generator); the transformations are ``model.eot`` of the generator training config ``eot_config``."""

    steps: int = 20
    samples: int = 4
    eot_config: str = "configs/generator/lama-tiny-robust.yaml"


@dataclass
class GeneratorSpec:
    checkpoint: str = "generator-lama-tiny"


@dataclass
class RobustGeneratorSpec:
    checkpoint: str = "generator-lama-tiny-robust"


@dataclass
class HybridSpec:
    k: list[int] = field(default_factory=lambda: [2, 5])
    checkpoint: str | None = None  # None: the generator method's checkpoint


@dataclass
class MethodsConfig:
    """The methods to run; a listed method with no options (``none:``) runs with its defaults."""

    none: NoneSpec | None = None
    optimiser: OptimiserSpec | None = None
    optimiser_eot: OptimiserEOTSpec | None = None
    generator: GeneratorSpec | None = None
    generator_robust: RobustGeneratorSpec | None = None
    hybrid: HybridSpec | None = None


@dataclass
class CompareConfig:
    images: str = "sample-val"  # sample-val | sample-train | sample-all (the embedded photos) or a folder
    masks: MaskConfig = field(default_factory=MaskConfig)
    max_samples: int | None = None
    inpainter: str = "lama-tiny"
    transfer: str | None = None
    methods: MethodsConfig = field(default_factory=lambda: MethodsConfig(
        none=NoneSpec(), optimiser=OptimiserSpec(), generator=GeneratorSpec(), hybrid=HybridSpec()))
    transforms: list[str] = field(default_factory=lambda: list(TRANSFORMS))
    batch_size: int = 1
    repeats: int = 1
    device: str = "cpu"
    seed: int = 0
    figure_rows: int = 4
    wandb: bool = False


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _build(cls: type, data: object, where: str) -> typing.Any:
    """An instance of dataclass ``cls`` from a YAML mapping, refusing unknown keys and values of the wrong type."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the file'} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key '{_join(where, key)}'; expected one of {', '.join(known)}")
    return cls(**{key: _value(hints[key], value, _join(where, key)) for key, value in data.items()})


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _value(tp: typing.Any, value: object, where: str) -> typing.Any:
    args = typing.get_args(tp)
    if type(None) in args:  # X | None
        inner = next(a for a in args if a is not type(None))
        if value is None:
            return _build(inner, {}, where) if is_dataclass(inner) else None
        return _value(inner, value, where)
    if is_dataclass(tp):
        return _build(tp, value, where)
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {_TYPE_NAMES[tp]}, got {value!r}")
    return value


def _check(cfg: CompareConfig) -> None:
    """Value checks that the types alone do not cover."""
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(cfg.images in SAMPLE_SETS or Path(cfg.images).is_dir(),
            f"images must be one of {', '.join(SAMPLE_SETS)} or an existing folder, got '{cfg.images}'")
    require(cfg.masks.kind in ("seeded", "files"), f"masks.kind must be 'seeded' or 'files', got '{cfg.masks.kind}'")
    require(cfg.masks.kind == "seeded" or cfg.images not in SAMPLE_SETS,
            "masks.kind 'files' needs images to be a folder holding the mask files")
    require(cfg.masks.size >= 16, f"masks.size must be >= 16, got {cfg.masks.size}")
    require(cfg.masks.per_image >= 1, f"masks.per_image must be >= 1, got {cfg.masks.per_image}")
    require(cfg.max_samples is None or cfg.max_samples >= 1, f"max_samples must be >= 1, got {cfg.max_samples}")
    methods = cfg.methods
    require(any(getattr(methods, f.name) is not None for f in fields(methods)),
            f"methods lists no method; choose from {', '.join(f.name for f in fields(methods))}")
    require(methods.optimiser is None or methods.optimiser.steps >= 1,
            f"methods.optimiser.steps must be >= 1, got {methods.optimiser and methods.optimiser.steps}")
    if methods.optimiser_eot is not None:
        spec = methods.optimiser_eot
        require(spec.steps >= 1 and spec.samples >= 1,
                f"methods.optimiser_eot.steps and .samples must be >= 1, got {spec.steps} and {spec.samples}")
        eot_from_config(spec.eot_config)  # a missing file or an EOT-less config is an error now, not after an hour
    require(methods.hybrid is None or (bool(methods.hybrid.k) and min(methods.hybrid.k) >= 1),
            f"methods.hybrid.k must be a non-empty list of steps >= 1, got {methods.hybrid and methods.hybrid.k}")
    for name in cfg.transforms:
        require(name in TRANSFORMS, f"unknown transform '{name}'; choose from {', '.join(TRANSFORMS)}")
    require(cfg.batch_size >= 1 and cfg.repeats >= 1, "batch_size and repeats must be >= 1")
    require(cfg.figure_rows >= 0, f"figure_rows must be >= 0, got {cfg.figure_rows}")
    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        raise ConfigError(f"device '{cfg.device}' is not a torch device (cpu, cuda, cuda:1, ...)") from None
    require(device.type != "cuda" or torch.cuda.is_available(), f"device '{cfg.device}' is not available here")


def eot_from_config(path: str) -> EOTConfig:
    """``model.eot`` of a generator training YAML: the transformations a robust generator was trained under."""
    if not Path(path).is_file():
        raise ConfigError(f"methods.optimiser_eot.eot_config '{path}' does not exist")
    try:
        eot = ((yaml.safe_load(Path(path).read_text()) or {}).get("model") or {}).get("eot")
        config = EOTConfig.coerce(eot)
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as err:
        raise ConfigError(f"methods.optimiser_eot.eot_config '{path}': {' '.join(str(err).split())}") from None
    if config is None:
        raise ConfigError(f"methods.optimiser_eot.eot_config '{path}' has no model.eot section")
    return config


def load_config(path: str | os.PathLike) -> CompareConfig:
    """Read and check a compare YAML file; every problem is one ConfigError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config '{path}' does not exist")
    try:
        cfg = _build(CompareConfig, yaml.safe_load(path.read_text()), "")
        _check(cfg)
    except yaml.YAMLError as err:
        raise ConfigError(f"config '{path}' is not valid YAML: {' '.join(str(err).split())}") from None
    except ConfigError as err:
        raise ConfigError(f"config '{path}': {err}") from None
    return cfg


# --- data and methods -----------------------------------------------------------------------

@dataclass
class Sample:
    name: str
    image: Tensor  # (3,H,W), 8-bit values
    mask: Tensor  # (1,H,W) in {0,1}


def load_samples(cfg: CompareConfig) -> list[Sample]:
    """The (image, mask) pairs to protect, images rounded to 8 bits (what a user's files hold)."""
    limit = cfg.max_samples or math.inf
    samples = []
    if cfg.masks.kind == "seeded":
        paths = sample_images(SAMPLE_SETS[cfg.images]) if cfg.images in SAMPLE_SETS else list_images(cfg.images)
        if not paths:
            raise ValueError(f"no images found in '{cfg.images}'")
        per = cfg.masks.per_image
        data = FixedCropDataset(paths, size=cfg.masks.size, masks_per_image=per, seed=cfg.masks.seed)
        for i in range(int(min(len(data), limit))):
            item = data[i]
            name = paths[i // per].stem + (f"#{i % per}" if per > 1 else "")
            samples.append(Sample(name, item["image"], item["mask"]))
    else:
        pairs = find_image_mask_pairs(cfg.images, cfg.masks.suffix)
        if not pairs:
            raise ValueError(f"no images found in '{cfg.images}'")
        missing = [path for path, masks in pairs if not masks]
        if missing:
            raise ValueError(f"image '{missing[0]}' has no mask '{missing[0].stem}{cfg.masks.suffix}*.png' beside it"
                             + (f" ({len(missing) - 1} more images lack one)" if len(missing) > 1 else ""))
        for path, mask_paths in pairs:
            image = read_image(path)
            for mask_path in mask_paths:
                if len(samples) < limit:
                    samples.append(Sample(mask_path.stem, image, read_mask(mask_path, size=tuple(image.shape[-2:]))))
    for s in samples:
        if not s.mask.any():
            raise ValueError(f"the mask of sample '{s.name}' is empty: nothing to protect")
        s.image = torch.round(s.image * 255) / 255
    return samples


def build_methods(cfg: CompareConfig, inpainter: Inpainter) -> tuple[dict[str, Method], str | None]:
    """The configured methods by display name, and the name of the optimiser (the reference), if any."""
    spec, device = cfg.methods, torch.device(cfg.device)
    protectors: dict[str, Protector] = {}

    def protector(checkpoint: str) -> Protector:
        if checkpoint not in protectors:
            protectors[checkpoint] = Protector.from_checkpoint(checkpoint, device=device)
        return protectors[checkpoint]

    methods: dict[str, Method] = {}
    reference = None
    if spec.none is not None:
        methods["none"] = no_protection()
    if spec.optimiser is not None:
        reference = f"optimiser ({spec.optimiser.steps} steps)"
        methods[reference] = iterative_method(inpainter, IterativeConfig(steps=spec.optimiser.steps), seed=cfg.seed)
    if spec.optimiser_eot is not None:
        eot = spec.optimiser_eot
        config = IterativeConfig(steps=eot.steps, eot=eot_from_config(eot.eot_config), eot_samples=eot.samples)
        methods[f"optimiser EOT ({eot.steps} steps x {eot.samples})"] = iterative_method(inpainter, config, seed=cfg.seed)
    if spec.generator is not None:
        methods["generator"] = generator_method(protector(spec.generator.checkpoint))
    if spec.generator_robust is not None:
        methods["generator (robust)"] = generator_method(protector(spec.generator_robust.checkpoint))
    if spec.hybrid is not None:
        checkpoint = spec.hybrid.checkpoint or (spec.generator or GeneratorSpec()).checkpoint
        for k in spec.hybrid.k:
            methods[f"hybrid (k={k})"] = hybrid_method(protector(checkpoint), inpainter, k)
    return methods, reference


# --- outputs --------------------------------------------------------------------------------

def _log(message: str) -> None:
    """Progress goes to stderr: stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_per_image(path: Path, samples: list[Sample], runs: list[MethodRun], results: list[MethodScore]) -> None:
    """One row per (sample, method): seconds, every metric on the saved PNG, robustness metrics per condition."""
    keys = list(results[0].metrics)
    conditions = list(results[0].conditions)
    extra = [(c, k) for c in conditions for k in (*ROBUSTNESS_METRICS, "attack_gain")]
    header = ["sample", "method", "seconds", *keys, *(f"{c}/{k}" for c, k in extra)]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for run, r in zip(runs, results):
                for i, s in enumerate(samples):
                    values = [run.image_seconds[i], *(r.metrics[k][i] for k in keys),
                              *(r.conditions[c][k][i] for c, k in extra)]
                    writer.writerow([s.name, r.name, *(f"{float(v):.6g}" for v in values)])
    atomic_write(path, write)


def save_grid(path: Path, title: str, rows: list[list[Tensor]]) -> Path:
    """A figure with one row of (3,H,W) images per sample and the GRID_COLUMNS as titles."""
    from kornia.utils import tensor_to_image
    from matplotlib.figure import Figure  # no pyplot: no global state, and the Agg canvas is used for PNG

    fig = Figure(figsize=(2.2 * len(GRID_COLUMNS), 2.2 * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), len(GRID_COLUMNS), squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            axes[r][c].imshow(tensor_to_image(image.clamp(0, 1)))
            axes[r][c].set_axis_off()
            if r == 0:
                axes[r][c].set_title(GRID_COLUMNS[c], fontsize=9)
    fig.suptitle(title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def save_speed_plot(path: Path, results: list[MethodScore]) -> Path:
    """Attack PSNR (mean, 95% t interval) against the time per image (log scale), one point per method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for r in results:
        s = summarise(r.metrics["attack_psnr"])
        if r.name == "none":  # it takes no time: a level, not a point
            ax.axhline(s.mean, ls="--", color="black", lw=1, label="no protection")
            continue
        low, high = (s.mean - s.low, s.high - s.mean) if math.isfinite(s.low) else (0.0, 0.0)
        ax.errorbar([max(r.seconds_per_image, 1e-6)], [s.mean], yerr=[[low], [high]], fmt="o", capsize=3)
        ax.annotate(r.name, (max(r.seconds_per_image, 1e-6), s.mean), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    ax.axhline(SUCCESS_DB, ls=":", color="grey", lw=1, label=f"success threshold ({SUCCESS_DB:g} dB)")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (median, warm)")
    ax.set_ylabel("attack PSNR to the target (dB)")
    ax.set_title("speed versus strength")
    ax.legend(fontsize=8)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


@torch.no_grad()
def save_figures(folder: Path, samples: list[Sample], runs: list[MethodRun], inpainter: Inpainter,
                 results: list[MethodScore], rows: int, device: torch.device) -> list[Path]:
    """A grid per method over the first ``rows`` samples, and the speed-versus-strength plot."""
    folder.mkdir(exist_ok=True)
    paths = []
    shown = samples[:rows]
    clean = [inpainter(s.image[None].to(device), s.mask[None].to(device))[0].cpu() for s in shown]
    for run in runs if shown else []:
        grid = []
        for s, fill, protected in zip(shown, clean, run.protected):
            attacked = inpainter(protected[None].to(device), s.mask[None].to(device))[0].cpu()
            noise = ((protected - s.image) * 20 + 0.5).clamp(0, 1)
            grid.append([s.image, protected, noise, fill, attacked])
        paths.append(save_grid(folder / f"grid-{slug(run.name)}.png", run.name, grid))
    paths.append(save_speed_plot(folder / "speed-vs-strength.png", results))
    return paths


def build_report(cfg: CompareConfig, config_path: Path, samples: list[Sample], results: list[MethodScore],
                 reference: str | None, transforms: list[str], figures: list[Path], out: Path) -> tuple[str, str]:
    """report.md, and its tables for stdout (main, robustness, transfer)."""
    masks = (f"seeded LaMa-style masks (seed {cfg.masks.seed}, {cfg.masks.per_image} per image) on "
             f"{cfg.masks.size} px centre crops" if cfg.masks.kind == "seeded"
             else f"mask files *{cfg.masks.suffix}*.png")
    ref = f"`{reference}`" if reference else "none (no optimiser in the config)"
    intro = [
        "# PaintGuard: protection methods compared",
        f"Config `{config_path}`: {len(samples)} samples from `{cfg.images}` with {masks}; inpainter attacked "
        f"`{cfg.inpainter}`; device `{cfg.device}`, torch {torch.__version__} with {torch.get_num_threads()} CPU "
        f"thread(s), batch size {cfg.batch_size}, {cfg.repeats} timed run(s) per batch.",
        "Every protected image is rounded to 8 bits within the bound (what a saved PNG holds) before it is scored. "
        "Values are means ± the half-width of a 95% Student-t interval over samples. Share of gain: the drop of "
        f"the attack loss from no noise, as a fraction of the reference's ({ref}); speed-up: the reference's time "
        "per image over the method's. Time per image: median of warm timed calls, after a warm-up call.",
    ]
    tables = [
        f"## Against {cfg.inpainter}",
        markdown_table(results, reference),
        "## Robustness: the saved image after a transformation",
        "The inpainter gets the transformed protected image; the gain is measured from the transformed unprotected "
        "image, and the share is of the reference's gain on the untouched PNG (how much of it survives).",
        condition_table(results, [SAVED, *transforms], reference),
    ]
    if cfg.transfer:
        tables += [f"## Transfer: the same saved images against {cfg.transfer}",
                   "An inpainter the generator was not trained against; the share is of the reference's gain on it.",
                   condition_table(results, [TRANSFER], reference, relative_to=TRANSFER)]
    rest = ["## Spread over samples", spread_table(results), "## Figures",
            "\n".join(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures)]
    return "\n\n".join(intro + tables + rest) + "\n", "\n\n".join(tables)


def log_to_wandb(cfg: CompareConfig, out: Path, results: list[MethodScore], reference: str | None,
                 conditions: list[str], figures: list[Path]) -> Path:
    """The tables (as wandb.Table) and figures in one W&B run under OUTDIR/wandb; returns the run's folder."""
    import wandb

    from trainer.wandb_logger import PaintGuardWandbLogger

    def table(records: list[dict]) -> wandb.Table:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        return wandb.Table(columns=list(records[0]), data=[[clean(v) for v in r.values()] for r in records])

    logger = PaintGuardWandbLogger(name="compare", save_dir=out, config=asdict(cfg), job_type="compare")
    run = logger.experiment
    robustness = [row for c in [SAVED, *conditions] for row in condition_records(results, c, reference)]
    if cfg.transfer:
        robustness += condition_records(results, TRANSFER, reference, relative_to=TRANSFER)
    run.log({"compare/main": table(main_records(results, reference)), "compare/robustness": table(robustness),
             **{f"figures/{p.stem}": wandb.Image(str(p)) for p in figures}})
    folder = Path(run.dir).parent
    logger.finalize("success")
    return folder


# --- command --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard compare", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="compare YAML, e.g. configs/compare/lama-tiny.yaml")
    parser.add_argument("--out", required=True, help="folder for report.md, per_image.csv and figures/")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    cfg = load_config(args.config)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out '{out}' is a file, not a folder")
    device = torch.device(cfg.device)
    samples = load_samples(cfg)
    inpainter = load_inpainter(cfg.inpainter, device=device)
    transfer = load_inpainter(cfg.transfer, device=device) if cfg.transfer else None
    methods, reference = build_methods(cfg, inpainter)
    out.mkdir(parents=True, exist_ok=True)

    images, masks = [s.image for s in samples], [s.mask for s in samples]
    runs = []
    for name, method in methods.items():
        _log(f"== {name}: protecting {len(samples)} samples on {device} ==")
        runs.append(run_method(name, method, images, masks, cfg.batch_size, cfg.repeats, EPS, device))

    def score(target: Inpainter, transform: str) -> dict[str, dict[str, Tensor]]:
        return score_runs(target, images, masks, runs, get_transform(transform), cfg.batch_size, cfg.seed, device)

    _log(f"== scoring against {cfg.inpainter}: saved PNG and {len(cfg.transforms)} transformations ==")
    saved = score(inpainter, SAVED)  # protected images are already 8-bit: the PNG round trip is exact
    transforms = [t for t in dict.fromkeys(cfg.transforms) if t != SAVED]
    conditions = {t: score(inpainter, t) for t in transforms}
    if transfer is not None:
        _log(f"== scoring against the transfer inpainter {cfg.transfer} ==")
        conditions[TRANSFER] = score(transfer, SAVED)
    results = [MethodScore(r.name, r.seconds_per_image, saved[r.name], None, r.images_per_second,
                           {c: scores[r.name] for c, scores in conditions.items()}) for r in runs]

    figures = save_figures(out / "figures", samples, runs, inpainter, results, cfg.figure_rows, device)
    write_per_image(out / "per_image.csv", samples, runs, results)
    report, tables = build_report(cfg, Path(args.config), samples, results, reference, transforms, figures, out)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(report))
    print(tables)
    if cfg.wandb:
        _log(f"== W&B run: {log_to_wandb(cfg, out, results, reference, transforms, figures)} ==")
    _log(f"wrote {out / 'report.md'}, {out / 'per_image.csv'} and {len(figures)} figures in {out / 'figures'} "
         f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    from trainer.cli import run_guarded

    sys.exit(run_guarded(main, sys.argv[1:]))
