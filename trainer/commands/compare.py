"""``paintguard compare --config CONFIG --out OUTDIR``: protection methods side by side.

Runs no protection, the 20-step optimiser, the one-pass generator, hybrids
(the generator's noise refined by k optimiser steps) and "refine" (k optimiser
steps on an encoder-gradient generator's own field) on the same images and
masks, and scores what a saved PNG of each holds: against the attacked
inpainter, after the transformations of ``trainer.objective.transforms`` (JPEG, resizing,
blur, noise), and optionally against a second "transfer" inpainter (usually one the
generator was not trained against), and against masks an editor might draw instead of
the protected one (``editor_masks``). With ``targets``, a transfer matrix: every
method's saved images scored against each target inpainter, next to the white-box
optimiser on that target (OUTDIR/transfer_per_image.csv, figures/transfer-matrix.png).
Writes OUTDIR/report.md, OUTDIR/per_image.csv and OUTDIR/figures/*.png and prints
the tables (nothing is written in OUTDIR until the run has succeeded; a rerun replaces
the previous report's files); with ``wandb: true`` the tables and figures also go to a W&B run
(offline unless an account is configured). See configs/compare/lama-tiny.yaml for
every option and configs/compare/transfer.yaml for the transfer experiment; ``--set
KEY=VALUE`` overrides one of them for a run (``--set masks.size=384``), ``--unset KEY``
takes one out (``--unset methods.optimiser_eot``).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from generator.cli_parser import ArgumentParser
from generator.messages import counted
from generator.resources import own_file
from generator.save import atomic_write, check_folder_out
from trainer.evaluation.compare_config import SAMPLE_SETS, CompareConfig, Unset, load_config
from trainer.evaluation.comparison import (EPS, TRANSFER, InpainterPool, MethodSet, Sample, build_methods,
                                           load_samples)
from trainer.evaluation.editor_masks import emptied, get_editor_mask
from trainer.evaluation.report import (
    build_report,
    log_progress,
    save_figures,
    save_transfer_heatmap,
    transfer_sections,
    write_per_image,
    write_transfer_csv,
)
from trainer.evaluation.scoring import MethodScore, run_method, score_runs
from trainer.evaluation.tables import SAVED, condition_records, main_records
from trainer.evaluation.transfer import TransferResult, run_transfer, transfer_records
from trainer.inpainting.inpainter import Inpainter
from trainer.objective.transforms import get_transform

Tensor = torch.Tensor
REPORT_TITLE = "# PaintGuard: protection methods compared"  # report.py's first line: a report compare wrote
OWN_FILES = ("report.md", "per_image.csv", "transfer_per_image.csv")


def check_out(out: Path, cfg: CompareConfig) -> None:
    """Refuse, before anything runs, an --out that cannot become this run's folder."""
    check_folder_out(out)
    if cfg.images not in SAMPLE_SETS:
        images, where = Path(cfg.images).resolve(), out.resolve()
        if where == images or images in where.parents:
            # the image folder is read recursively: the next run would take the figures for photos
            raise ValueError(f"--out '{out}' lies within the images folder '{cfg.images}'; choose a folder outside it")
    report = out / "report.md"
    if report.is_file() and not read_text(report).startswith(REPORT_TITLE):
        raise ValueError(f"--out '{out}' holds a report.md that paintguard compare did not write; "
                         "choose another folder")


def read_text(path: Path) -> str:
    """A file's text, or '' where it cannot be read as text."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def previous_outputs(out: Path) -> list[Path]:
    """The files a previous run wrote in ``out``: its report names its figures; this run's replace them all."""
    report = read_text(out / "report.md")
    if not report.startswith(REPORT_TITLE):
        return []
    figures = re.findall(r"\]\((figures/[^)\s]+\.png)\)", report)
    return [out / name for name in dict.fromkeys([*OWN_FILES, *figures]) if (out / name).is_file()]


def make_stage(out: Path) -> Path:
    """A hidden folder on ``out``'s file system for this run's outputs until they are complete."""
    base = next(p for p in [out, *out.absolute().parents] if p.is_dir())
    return Path(tempfile.mkdtemp(prefix=".paintguard-compare-", dir=base))


def publish(stage: Path, out: Path) -> None:
    """Move the finished outputs from ``stage`` into ``out``, in place of a previous run's; report.md last."""
    stale = previous_outputs(out)
    out.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.unlink()
    files = sorted((p for p in stage.rglob("*") if p.is_file()), key=lambda p: p.name == "report.md")
    for path in files:
        target = out / path.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)


def log_to_wandb(cfg: CompareConfig, out: Path, results: list[MethodScore], reference: str | None,
                 conditions: list[str], figures: list[Path], transfer: TransferResult | None = None) -> Path:
    """The tables (as wandb.Table) and figures in one W&B run under OUTDIR/wandb; returns the run's folder."""
    import wandb

    from trainer.training.wandb_logger import (
        PaintGuardWandbLogger,  # lazy: only with `wandb: true`
    )

    def table(records: list[dict]) -> wandb.Table:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        return wandb.Table(columns=list(records[0]), data=[[clean(v) for v in r.values()] for r in records])

    logger = PaintGuardWandbLogger(name="compare", save_dir=out, config=asdict(cfg), job_type="compare")
    run = logger.experiment
    robustness = [row for c in [SAVED, *conditions] for row in condition_records(results, c, reference)]
    if cfg.transfer:
        robustness += condition_records(results, TRANSFER, reference, relative_to=TRANSFER)
    tables = {"compare/main": table(main_records(results, reference)), "compare/robustness": table(robustness)}
    if transfer is not None:
        tables["compare/transfer"] = table(transfer_records(transfer))
    run.log({**tables, **{f"figures/{p.stem}": wandb.Image(str(p)) for p in figures}})
    folder = Path(run.dir).parent
    logger.finalize("success")
    return folder


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard compare", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="compare YAML, e.g. configs/compare/lama-tiny.yaml")
    parser.add_argument("--out", required=True, help="folder for report.md, per_image.csv and figures/")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="override one option of the config, dotted, the value as YAML (repeatable): "
                             "--set masks.size=384 --set methods.hybrid.k=[2]")
    parser.add_argument("--unset", action="append", metavar="KEY", dest="settings", type=Unset,
                        help="take one option out of the config, dotted, as if the file left it out (repeatable): "
                             "--unset methods.optimiser_eot runs the others without it")
    return parser


@dataclass
class Outcome:
    """What a comparison produced: its figures (in the stage folder), transformations, scores, transfer matrix
    (None without ``targets``) and the tables to print."""

    figures: list[Path]
    transforms: list[str]
    results: list[MethodScore]
    matrix: TransferResult | None
    tables: str


def compare(cfg: CompareConfig, config: str, stage: Path, samples: list[Sample], inpainter: Inpainter,
            transfer: Inpainter | None, pool: InpainterPool, built: MethodSet, editor_masks: list[str],
            device: torch.device) -> Outcome:
    """Run and score the methods and write the outputs in ``stage``."""
    methods, reference = built.methods, built.reference
    images, masks = [s.image for s in samples], [s.mask for s in samples]
    runs = []
    for name, method in methods.items():
        log_progress(f"== {name}: protecting {counted(len(samples), 'sample')} on {device} ==")
        runs.append(run_method(name, method, images, masks, cfg.batch_size, cfg.repeats, EPS, device))

    def score(target: Inpainter, transform: str, editor_mask: str | None = None) -> dict[str, dict[str, Tensor]]:
        return score_runs(target, images, masks, runs, get_transform(transform), cfg.batch_size, cfg.seed, device,
                          None if editor_mask is None else get_editor_mask(editor_mask))

    transforms = [t for t in dict.fromkeys(cfg.transforms) if t != SAVED]  # "png" is the saved image itself
    n = len(transforms)
    log_progress(f"== scoring against {cfg.inpainter}: saved PNG and {counted(n, 'transformation')} ==")
    saved = score(inpainter, SAVED)  # protected images are already 8-bit: the PNG round trip is exact
    conditions = {t: score(inpainter, t) for t in transforms}
    if editor_masks:
        log_progress(f"== scoring against {cfg.inpainter}: {len(editor_masks)} masks an editor might draw instead ==")
    for name in editor_masks:  # the saved PNG as it is (its round trip is exact), another mask edited
        conditions[name] = score(inpainter, SAVED, name)
    if transfer is not None:
        log_progress(f"== scoring against the transfer inpainter {cfg.transfer} ==")
        conditions[TRANSFER] = score(transfer, SAVED)
    results = [MethodScore(r.name, r.seconds_per_image, saved[r.name], None, r.images_per_second,
                           {c: scores[r.name] for c, scores in conditions.items()}) for r in runs]

    matrix = None
    if cfg.targets:
        steps = cfg.methods.optimiser.steps if cfg.methods.optimiser is not None else 20
        matrix = run_transfer(cfg.targets, pool, cfg.inpainter, runs, built.against, reference, images, masks,
                              steps, cfg.seed, cfg.batch_size, EPS, device, log_progress)

    figures = save_figures(stage / "figures", samples, runs, inpainter, results, cfg.figure_rows, device)
    write_per_image(stage / "per_image.csv", samples, runs, results)
    sections = []
    if matrix is not None:
        figures.append(save_transfer_heatmap(stage / "figures" / "transfer-matrix.png", matrix))
        write_transfer_csv(stage / "transfer_per_image.csv", samples, matrix)
        sections = transfer_sections(matrix)
    report, tables = build_report(cfg, config, samples, results, reference, transforms, figures, stage,
                                  sections, editor_masks)
    atomic_write(stage / "report.md", lambda tmp: tmp.write_text(report))
    return Outcome(figures, transforms, results, matrix, tables)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except MemoryError:  # numpy's and torch's CPU allocations: one line, not a traceback
        raise RuntimeError("out of memory: lower masks.size, max_samples or batch_size in the config") from None


def run(args: argparse.Namespace) -> int:
    """The comparison that ``main`` parsed the arguments of; writes nothing in --out until it has succeeded."""
    start = time.perf_counter()
    args.config = str(own_file(args.config))  # configs/compare/... from any folder: the shipped one
    cfg = load_config(args.config, args.settings)
    out = Path(args.out)
    check_out(out, cfg)
    device = torch.device(cfg.device)
    samples = load_samples(cfg)
    editor_masks = list(dict.fromkeys(cfg.editor_masks))
    for name in editor_masks:  # now, not after the methods have run
        empty = [samples[i].name for i in emptied(name, [s.mask for s in samples])]
        if empty:
            raise ValueError(f"editor mask '{name}' leaves nothing of the mask of sample '{empty[0]}' to edit"
                             + (f" ({len(empty) - 1} more)" if len(empty) > 1 else ""))
    pool = InpainterPool(device)
    inpainter = pool(cfg.inpainter)
    transfer = pool(cfg.transfer) if cfg.transfer else None
    for target in cfg.targets:  # a missing target is an error now, not after the methods have run
        pool(target)
    built = build_methods(cfg, inpainter, pool)
    stage = make_stage(out)
    try:
        given = " ".join([args.config, *(f"--{'unset' if isinstance(setting, Unset) else 'set'} {setting}"
                                          for setting in args.settings)])  # as the report says it
        done = compare(cfg, given, stage, samples, inpainter, transfer, pool, built, editor_masks, device)
        publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(done.tables)
    figures = [out / p.relative_to(stage) for p in done.figures]
    if cfg.wandb:
        folder = log_to_wandb(cfg, out, done.results, built.reference, done.transforms + editor_masks, figures,
                              done.matrix)
        log_progress(f"== W&B run: {folder} ==")
    log_progress(f"wrote {out / 'report.md'}, {out / 'per_image.csv'} and {len(figures)} figures in {out / 'figures'} "
         f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    from trainer.commands.cli import run_guarded

    sys.exit(run_guarded(main, sys.argv[1:]))
