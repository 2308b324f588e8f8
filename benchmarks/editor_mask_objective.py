"""Two ways to protect against the editor's own mask: optimising over a few masks, and pushing the hole's pixels.

    python benchmarks/editor_mask_objective.py [--splits val] [--generator generator-lama-tiny] [--skip-family]
        [--push 1.0 0.5 0.25] [--threads N]

The paper's objective covers the protected mask m and its 17 x 17 dilation; ``--editor-masks`` of
``amortisation.py`` shows how little of the optimiser's gain survives when the editor inpaints a mask 4 px
tighter, 4 or 16 px looser or 8 px off. Here the same 20 Adam steps minimise the mean of the paper's total over
a family of masks, m and three others near it (``FAMILY``), none of which is one of the editor's masks it is
scored on; each member of the family is one task of the ensemble objective (``trainer.objective.ensemble``),
with its own dilation, ring and clean ring edit. It prints each method's share of the paper's optimiser's gain
under the protected mask and what survives each editor's mask.

The other way costs no step: every method's hole pixels moved by eps towards the target colour, the colour push
(``colour_push_method``) inside m only (``push_hole``). Neither of the attacking edits sees the hole, so their
losses stay as they were; a tighter or shifted mask shows the inpainter pushed pixels; the benign ring edit, which
sees the hole, pays for it. A second table gives every method's hide and noise PSNR under the protected mask.
Samples and cached references as in ``amortisation.py``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from amortisation import OPTIMISER, add_sample_arguments, editor_mask_table, load_protectors, split_samples
from generator.cli_parser import ArgumentParser
from generator.messages import counted
from trainer.commands.cli import run_guarded
from trainer.evaluation.editor_masks import EDITOR_MASKS
from trainer.evaluation.scoring import MethodRun, as_saved, colour_push_method, generator_method, run_method, score_runs
from trainer.evaluation.tables import markdown
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.ensemble import EnsembleTask
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import prepare_task
from trainer.objective.mask_family import FAMILY

EPS = IterativeConfig().eps


def family_optimiser(inpainter, steps: int = 20, seed: int = 0):
    """The paper's optimiser on the mean of the total over m and each ``FAMILY`` mask of it."""
    def protect(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tasks = [prepare_task(inpainter, image, m) for m in [mask, *(f(mask) for f in FAMILY.values())]]
        gen = torch.Generator(device=image.device).manual_seed(seed)
        return protect_iterative([inpainter] * len(tasks), image, mask, IterativeConfig(steps=steps), generator=gen,
                                 task=EnsembleTask(tasks)).protected
    return protect


def push_hole(protected: torch.Tensor, image: torch.Tensor, mask: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``protected`` with the hole's pixels moved by eps from ``image`` towards the target colour: the attack and
    incp edits never see them, so their losses stay as they were, while a tighter editor's mask shows the pushed
    band."""
    return torch.where(mask > 0, colour_push_method(eps)(image, mask), protected)


def hole_push(method, eps: float = EPS):
    """``method`` followed by :func:`push_hole`."""
    return lambda image, mask: push_hole(method(image, mask), image, mask, eps)


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["val"])
    parser.add_argument("--generator", action="append", default=[], help="also score these generators")
    parser.add_argument("--skip-family", action="store_true", help="without the optimiser over a family of masks")
    parser.add_argument("--push", type=float, nargs="+", default=[1.0],
                        help="how far the hole's pixels move, as fractions of eps (one set of runs each)")
    add_sample_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inpainter = load_inpainter(args.inpainter)
    protectors = load_protectors(parser, args.generator)
    for split in args.splits:
        images, masks, runs = split_samples(parser, args, inpainter, split)
        runs += [run_method(name, generator_method(p), images, masks, batch_size=1) for name, p in protectors.items()]
        paper = {run.name: run for run in runs}[OPTIMISER]
        for fraction in args.push:
            push = "push in the hole" + ("" if fraction == 1 else f" ({fraction:g} eps)")
            runs.append(MethodRun.untimed(f"{OPTIMISER} + {push}", [
                as_saved(push_hole(p[None], x[None], m[None], fraction * EPS), x[None], EPS)[0]
                for p, x, m in zip(paper.protected, images, masks)]))
            runs += [run_method(f"{name} + {push}", hole_push(generator_method(p), fraction * EPS), images, masks,
                                batch_size=1) for name, p in protectors.items()]
        if not args.skip_family:
            label = f"optimiser over m, {', '.join(FAMILY)} (20 steps)"
            family = run_method(label, family_optimiser(inpainter), images, masks, batch_size=1)
            # what a protector whose noise is zero in the hole (the gradient heads') could keep of it at best
            runs += [family, MethodRun.untimed("the same, its noise in the hole cut", [
                torch.where(m > 0, x, p) for p, x, m in zip(family.protected, images, masks)])]
        print(f"## {split}: {counted(len(images), 'sample')}\n")
        metrics = score_runs(inpainter, images, masks, runs, batch_size=4)
        print(editor_mask_table(inpainter, images, masks, runs, list(EDITOR_MASKS), metrics), flush=True)
        print("\n" + markdown(["method", "hide PSNR (dB)", "noise PSNR (dB)"], [
            [run.name, *(f"{metrics[run.name][k].mean():.2f}" for k in ("hide_psnr", "noise_psnr"))]
            for run in runs]), flush=True)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
