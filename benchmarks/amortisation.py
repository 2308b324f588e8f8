"""How much of the 20-step optimiser's effect a generator keeps, on the train, validation and test photo splits.

    python benchmarks/amortisation.py --generator generator-lama-tiny [--generator FILE ...]
        [--splits train val test] [--photos-per-split 11] [--masks-per-image 2] [--size 256] [--k 1 2]
        [--refine-k 1 2] [--refine-lr 0.2] [--dtypes float32 bfloat16] [--optimiser-bfloat16] [--optimiser-seeds 1 2]
        [--editor-masks mask-erode-9 mask-dilate-33 ...]

For each split (``trainer/data/splits.py``; needs ``make photos``) it protects centre
crops with seeded LaMa masks by: no noise, the 20-step optimiser (the reference), one
FGSM step, the closed-form colour push ``eps * sign(target - x)`` (no network: the floor a
generator must beat), each generator, and hybrids of the first generator with k optimiser steps
(on the pixels, as the paper's optimiser) and, for an encoder-gradient generator, "refine" with
k steps on its own field (``trainer/objective/field_steps.py``);
every result is rounded to 8 bits within the bound (a saved PNG) and scored against
the inpainter. It prints, per split, the full metric table and a summary row per method:
share of the optimiser's attack gain, hide PSNR, noise PSNR and time per image, then
one line per method with the three shares side by side. With several generators, a last table gives
each one's share minus the first's on the same samples, with a 95% interval over them: the samples'
difficulty cancels in the differences, so it tells checkpoints apart that the shares alone cannot.
``--dtypes`` runs every generator in each precision (``paintguard protect --dtype``), labelled by it, and the
hybrids' and refine's steps in the first one's;
``--optimiser-bfloat16`` adds the 20-step optimiser with the inpainter's convolutions in bfloat16 (autocast).
``--optimiser-seeds`` adds it from other random starts (the reference starts from seed 0's): how much of its gain
the same optimiser keeps with another start is the spread any share is measured against.
``--editor-masks`` also scores every method when the editor inpaints another mask than the protected one
(``trainer/evaluation/editor_masks.py``): the share of the optimiser's gain under the protected mask that survives,
and, in brackets, the share of the optimiser's own gain under that mask.
Recipes and stopping steps are chosen on "val"; "test" is for the final figures only.

The none / optimiser / FGSM results do not depend on the generator, so they are kept
in ``--reference-dir`` (one file per split, keyed by the inpainter's weight fingerprint
and the sample recipe) and reused by later runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from generator.cli_parser import ArgumentParser, positive_int
from generator.messages import counted
from generator.precision import DTYPES, labelled
from generator.protector import Protector
from generator.save import atomic_write, check_creatable
from trainer.commands.cli import run_guarded
from trainer.data.images import FixedCropDataset
from trainer.data.splits import split_paths
from trainer.evaluation.editor_masks import EDITOR_MASKS, emptied, get_editor_mask
from trainer.evaluation.scoring import (
    MethodRun,
    MethodScore,
    autocast_method,
    colour_push_method,
    fgsm_method,
    generator_method,
    hybrid_method,
    iterative_method,
    no_protection,
    refine_method,
    run_method,
    score_runs,
)
from trainer.evaluation.tables import Summary, markdown, markdown_table, paired_share_difference
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.field_steps import FIELD_LR, has_field
from trainer.objective.iterative import IterativeConfig
from trainer.objective.metrics import share_of_gain

OPTIMISER = "optimiser (20 steps)"
REFERENCES = ("none", OPTIMISER, "FGSM (1 step)")


def samples(split: str, photos: int, masks_per_image: int, size: int, seed: int) -> tuple[list, list]:
    """8-bit centre crops of the first ``photos`` photos of ``split``, each with ``masks_per_image`` seeded masks."""
    paths = split_paths(split)[:photos]
    data = FixedCropDataset(paths, size=size, masks_per_image=masks_per_image, seed=seed)
    images, masks = data.batch()
    return list((torch.round(images * 255) / 255).unbind()), list(masks.unbind())


def reference_path(folder: str | Path, inpainter, split: str, photos: int, masks_per_image: int, size: int,
                   seed: int) -> Path:
    """Where the none / optimiser / FGSM results of these samples are kept: keyed by weights and sample recipe."""
    key = json.dumps([inpainter.fingerprint(), split, photos, masks_per_image, size, seed])
    return Path(folder) / f"{split}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.safetensors"


def reference_runs(inpainter, images: list, masks: list, cache: Path) -> list[MethodRun]:
    """none, the optimiser and FGSM on these samples: from ``cache`` when it matches, else run and stored.

    Cached runs come back untimed (seconds NaN), and their times are not stored: taken in an earlier run, under
    another load, they would give speed-ups no one run measured (``compare_speed.py`` times both in one run)."""
    if cache.is_file():
        stored = load_file(str(cache))
        return [MethodRun.untimed(name, list(stored[name].float().div(255).unbind())) for name in REFERENCES]
    methods = {"none": no_protection(), OPTIMISER: iterative_method(inpainter, IterativeConfig(steps=20)),
               "FGSM (1 step)": fgsm_method(inpainter)}
    runs = [run_method(name, m, images, masks, batch_size=1) for name, m in methods.items()]
    tensors = {run.name: (torch.stack(run.protected) * 255).round().to(torch.uint8) for run in runs}
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(cache))
    return runs


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that pick the samples and their cached references (shared with ``noise_views.py``)."""
    parser.add_argument("--inpainter", default="lama-tiny")
    parser.add_argument("--photos-per-split", type=positive_int, default=11, help="first N photos of each split")
    parser.add_argument("--masks-per-image", type=positive_int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-dir", default="runs/amortisation-reference")
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads())


def split_samples(parser: argparse.ArgumentParser, args: argparse.Namespace, inpainter,
                  split: str) -> tuple[list, list, list[MethodRun]]:
    """(images, masks, the none / optimiser / FGSM runs) of ``split``; a bad split or no photos is one line."""
    try:
        images, masks = samples(split, args.photos_per_split, args.masks_per_image, args.size, args.seed)
    except ValueError as err:  # no `make photos` yet, or an unknown split
        parser.error(str(err))
    cache = reference_path(args.reference_dir, inpainter, split, args.photos_per_split, args.masks_per_image,
                           args.size, args.seed)
    return images, masks, reference_runs(inpainter, images, masks, cache)


def load_protectors(parser: argparse.ArgumentParser, names: list[str], dtypes: tuple[str, ...] = ("float32",)
                    ) -> dict[str, Protector]:
    """The generators given (shipped names or files) in each of ``dtypes``, labelled by their short names (and the
    dtype, if not float32); a bad or repeated one is one line (shared with ``averaging.py``)."""
    short = [Path(g).stem if g.endswith(".safetensors") else g for g in names]
    # a run's export and the shipped file it becomes share a name: label those by what was given
    labels = [name if short.count(name) == 1 else g for name, g in zip(short, names)]
    if len(set(labels)) < len(labels):
        parser.error("a generator is given twice")
    try:
        return {labelled(label, dtype):
                Protector.from_checkpoint(g, dtype=getattr(torch, dtype))
                for label, g in zip(labels, names) for dtype in dtypes}
    except ValueError as err:  # a CheckpointError among them: one line, not a traceback
        parser.error(str(err))


def _interval(s: Summary) -> str:
    return f"{s.mean:+.3f} [{s.low:+.3f}, {s.high:+.3f}]"


def editor_mask_table(inpainter, images: list, masks: list, runs: list[MethodRun], names: list[str],
                      saved: dict[str, dict[str, torch.Tensor]], paired: list[str] | None = None) -> str:
    """Each method's share of the optimiser's gain under the protected mask that survives each editor's mask, and
    in brackets its share of the optimiser's own gain under that mask; ``saved``: ``score_runs`` of the same runs
    under the protected mask, which the caller has already made. The last column is the mean over all the masks,
    the protected one included: the share when the editor draws any of them equally often. With ``paired``
    (method names, two or more), also each one's share minus the first's under every mask, on the same samples."""
    def gains(scored: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {run.name: scored[run.name]["attack_gain"] for run in runs}

    protected = gains(saved)
    columns = [protected, *(gains(score_runs(inpainter, images, masks, runs, batch_size=4,
                                             editor_mask=get_editor_mask(name))) for name in names)]
    columns.append({run.name: sum(g[run.name] for g in columns) / len(columns) for run in runs})
    rows = [[run.name, f"{share_of_gain(protected[run.name], protected[OPTIMISER]):.2f}",
             *(f"{share_of_gain(g[run.name], protected[OPTIMISER]):.2f} "
               f"({share_of_gain(g[run.name], g[OPTIMISER]):.2f})" for g in columns[1:])] for run in runs]
    header = ["protected mask", *names, "mean"]
    table = ("Under the editor's mask: the share of the optimiser's gain under the protected mask that survives (in "
             "brackets: of the optimiser's own gain under the editor's mask)\n\n"
             + markdown(["method", *header], rows))
    if paired and len(paired) > 1:
        rows = [[name, *(_interval(paired_share_difference(g[name], g[paired[0]], protected[OPTIMISER]))
                         for g in columns)] for name in paired[1:]]
        table += (f"\n\nUnder the editor's mask, share minus {paired[0]}'s on the same samples (mean [95% "
                  "interval])\n\n" + markdown(["generator", *header], rows))
    return table


def check_report_path(parser: argparse.ArgumentParser, out: Path) -> None:
    """Refuse, in one line, a report path that cannot be written: a folder, or one in a folder that is not there."""
    if out.is_dir():
        parser.error(f"--out '{out}' is a folder; give the report's file, such as '{out / 'report.md'}'")
    try:
        check_creatable(out)
    except ValueError as err:
        parser.error(str(err))
    if not out.parent.is_dir():
        parser.error(f"--out '{out}': the folder '{out.parent}' does not exist")


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", required=True, help="shipped name or file; repeatable")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    parser.add_argument("--k", type=int, nargs="*", default=[1, 2], help="optimiser steps of the hybrids")
    parser.add_argument("--refine-k", type=int, nargs="*", default=[1, 2],
                        help="steps of 'refine' on the first generator's field (encoder-gradient generators only)")
    parser.add_argument("--refine-lr", type=float, default=FIELD_LR, help="its rate, relative to each field's size")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["float32"],
                        help="run every generator in each of these precisions")
    parser.add_argument("--optimiser-bfloat16", action="store_true",
                        help="also the optimiser with the inpainter's convolutions in bfloat16")
    parser.add_argument("--optimiser-seeds", type=int, nargs="*", default=[],
                        help="also the optimiser from these seeds' random starts (the reference: seed 0)")
    parser.add_argument("--editor-masks", nargs="*", choices=list(EDITOR_MASKS), default=[],
                        help="also score under these masks an editor might draw instead of the protected one")
    parser.add_argument("--out", default=None, help="also write the report (Markdown) here")
    add_sample_arguments(parser)
    args = parser.parse_args()
    if 0 in args.optimiser_seeds:
        parser.error("--optimiser-seeds 0 is the reference's own start")
    if args.out:  # before the work: a folder given here used to end an hour's run at its last line
        check_report_path(parser, Path(args.out))
    torch.set_num_threads(args.threads)
    inpainter = load_inpainter(args.inpainter)
    protectors = load_protectors(parser, args.generator, tuple(args.dtypes))
    report, shares, paired, spread = [], {}, {}, {}
    for split in args.splits:
        images, masks, runs = split_samples(parser, args, inpainter, split)
        for name in args.editor_masks:  # before any method runs
            if empty := emptied(name, masks):
                parser.error(f"--editor-masks {name} leaves nothing of {len(empty)} of {split}'s masks")
        first_name, first = next(iter(protectors.items()))
        methods = {"colour push (no network)": colour_push_method()}
        if args.optimiser_bfloat16:
            methods[labelled("optimiser", "20 steps", "bfloat16")] = autocast_method(
                iterative_method(inpainter, IterativeConfig(steps=20)), torch.bfloat16)
        starts = {labelled("optimiser", "20 steps", f"seed {seed}"):
                  iterative_method(inpainter, IterativeConfig(steps=20), seed=seed) for seed in args.optimiser_seeds}
        methods.update(starts)
        methods.update({name: generator_method(p) for name, p in protectors.items()})
        methods.update({f"hybrid (k={k})": hybrid_method(first, inpainter, k) for k in args.k})
        if has_field(first.net):
            methods.update({f"refine (k={k})": refine_method(first, inpainter, k, args.refine_lr)
                            for k in args.refine_k})
        runs += [run_method(name, m, images, masks, batch_size=1) for name, m in methods.items()]
        metrics = score_runs(inpainter, images, masks, runs, batch_size=4)
        results = [MethodScore(r.name, r.seconds_per_image, metrics[r.name]) for r in runs]
        ref = metrics[OPTIMISER]["attack_gain"]
        for r in results:
            shares.setdefault(r.name, {})[split] = share_of_gain(r.metrics["attack_gain"], ref)
        for name in list(protectors)[1:]:
            paired.setdefault(name, {})[split] = paired_share_difference(
                metrics[name]["attack_gain"], metrics[first_name]["attack_gain"], ref)
        for name in starts:
            spread.setdefault(name, {})[split] = paired_share_difference(metrics[name]["attack_gain"], ref, ref)
        photos = len(images) // args.masks_per_image  # a split may hold fewer photos than asked for
        report += [f"## {split}: {counted(len(images), 'sample')} ({counted(photos, 'photo')} x "
                   f"{counted(args.masks_per_image, 'mask')}, {args.size} px) against {args.inpainter}", markdown_table(results, OPTIMISER)]
        if args.editor_masks:
            report[-1] += "\n\n" + editor_mask_table(inpainter, images, masks, runs, args.editor_masks, metrics,
                                                     paired=list(protectors))
        if runs[0].timed_images == 0:
            report[-1] += (f"\n\nnone, optimiser and FGSM: cached in {args.reference_dir}, so untimed here and no "
                           "speed-up; benchmarks/compare_speed.py times the optimiser and a generator in one run.")
        print("\n\n".join(report[-2:]), flush=True)
    summaries = len(report)  # the tables across splits start here; the end prints them together
    rows = [[name, *(f"{shares[name].get(s, float('nan')):.2f}" for s in args.splits)] for name in shares]
    report += ["## Share of the 20-step optimiser's attack gain", markdown(["method", *args.splits], rows)]
    if paired:  # a difference between checkpoints smaller than the spread across samples can still be real
        rows = [[name, *(_interval(paired[name][s]) for s in args.splits)] for name in paired]
        report += [f"## Share minus {first_name}'s, on the same samples (mean [95% interval])",
                   markdown(["generator", *args.splits], rows)]
    if spread:  # the reference's own start is one draw: what another start gives is the floor of any comparison
        rows = [[name, *(_interval(spread[name][s]) for s in args.splits)] for name in spread]
        report += ["## The optimiser from other random starts: share minus the reference's 1.00, on the same "
                   "samples (mean [95% interval])", markdown(["method", *args.splits], rows)]
    print("\n\n" + "\n\n".join(report[summaries:]))
    if args.out:
        atomic_write(args.out, lambda tmp: tmp.write_text("\n\n".join(report) + "\n"))


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
