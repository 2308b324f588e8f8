"""Is a generator's share limited by the size of its noise or by its direction? Two checks without training.

    python benchmarks/noise_views.py [--generator generator-lama-tiny] [--split val] [--threads 1]

On the samples and cached references of ``benchmarks/amortisation.py`` (same split, photos, masks
and size), it scores the generator's noise d reshaped after the fact:

- magnitude: ``eps * sign(d) * |d / eps|^p`` for p = 1 (as it is), 0.5, 0.25 and 0 (the corners of
  the bound). If the share rose towards the corners, the generator would be short of size, not direction;
- views: d averaged over the image and its mirror images (each mapped back), plain and signed. Averaging
  helps only if the inpainter's response were flip-equivariant, which LaMa's is not;
- the 8-bit save: d rounded away from zero instead of to the nearest level, and with ``--before-save`` the
  generator's and the optimiser's gains before the save (the optimiser is run again: about 2 minutes a split
  at one thread). eps = 0.025 is 6.375 levels, so the save clips every method to 6 levels.
"""

from __future__ import annotations

import argparse
import sys

import torch

from amortisation import OPTIMISER, REFERENCES, add_sample_arguments, split_samples
from generator.cli_parser import ArgumentParser
from generator.messages import counted
from generator.protector import Protector
from trainer.commands.cli import run_guarded
from trainer.evaluation.scoring import MethodRun, iterative_method, run_method, score_runs
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.iterative import IterativeConfig
from trainer.objective.metrics import share_of_gain

POWERS = (1.0, 0.5, 0.25, 0.0)
VIEWS = {"image + horizontal mirror": [(), (-1,)], "image + 3 mirrors": [(), (-1,), (-2,), (-1, -2)]}

parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--generator", default="generator-lama-tiny", help="shipped name or file")
parser.add_argument("--split", default="val")
parser.add_argument("--before-save", action="store_true",
                    help="also score the generator and a fresh optimiser run before the 8-bit save")
add_sample_arguments(parser)


def noise_method(protector: Protector, views: list[tuple[int, ...]], power: float | None):
    """Protect with the generator's noise averaged over ``views`` (flip dims), then reshaped by ``power``."""
    eps = protector.eps

    def flip(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        return t.flip(dims) if dims else t

    def protect(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        d = sum(flip(protector.protect(flip(image, v), flip(mask, v)) - flip(image, v), v) for v in views)
        d = (d / len(views)).clamp(-eps, eps)
        if power is not None:
            d = torch.sign(d) * eps * (d.abs() / eps) ** power
        return (image + d).clamp(0, 1)
    return protect


def away_from_zero(protector: Protector):
    """The generator's noise rounded to whole 8-bit levels away from zero (the save then rounds nothing)."""
    def protect(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        d = protector.protect(image, mask) - image
        return (image + torch.sign(d) * torch.ceil(d.abs() * 255 - 1e-4) / 255).clamp(0, 1)
    return protect


def unsaved(name: str, method, images: list, masks: list) -> MethodRun:
    """``method``'s images as it returns them, in floats: what the scored runs hold before the 8-bit save."""
    return MethodRun.untimed(name, [method(i[None], m[None])[0].detach().clamp(0, 1) for i, m in zip(images, masks)])


def main() -> None:
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        protector = Protector.from_checkpoint(args.generator)
    except ValueError as err:  # a CheckpointError: one line, not a traceback
        parser.error(str(err))
    inpainter = load_inpainter(args.inpainter)
    images, masks, runs = split_samples(parser, args, inpainter, args.split)
    names = {1.0: "as it is", 0.0: "eps * sign(d): the corners"}
    methods = {names.get(p, f"size to the power {p:g}"): noise_method(protector, [()], p) for p in POWERS}
    for name, views in VIEWS.items():
        methods[f"mean over {name}"] = noise_method(protector, views, None)
        methods[f"mean over {name}, then sign"] = noise_method(protector, views, 0.0)
    methods["as it is, rounded away from zero"] = away_from_zero(protector)
    runs += [run_method(name, m, images, masks, batch_size=1) for name, m in methods.items()]
    # the generator's own images, before the 8-bit save the scored runs went through: its noise's size, and a run
    plain = unsaved("generator, before the save", protector.protect, images, masks)
    if args.before_save:
        runs += [plain, unsaved("optimiser, before the save", iterative_method(inpainter, IterativeConfig(steps=20)),
                                images, masks)]
    metrics = score_runs(inpainter, images, masks, runs, batch_size=4)
    size = torch.stack([((p - i).abs() / protector.eps).mean() for p, i in zip(plain.protected, images)]).mean()
    ref = metrics[OPTIMISER]["attack_gain"]
    print(f"{args.generator} on {args.split} ({counted(len(images), 'sample')}, {args.size} px): "
          f"mean |d| = {size:.2f} eps")
    print("| noise | share of the optimiser's gain |\n|---|---:|")
    for run in runs[len(REFERENCES):]:
        print(f"| {run.name} | {share_of_gain(metrics[run.name]['attack_gain'], ref):.3f} |")
    if args.before_save:  # the share is a ratio of saved gains: the save costs it only where it costs one side more
        gain = {name: metrics[name]["attack_gain"] for name in ("as it is", "generator, before the save")}
        before = metrics["optimiser, before the save"]["attack_gain"]
        print("\nbefore the save, as a share of the optimiser's gain before the save: generator "
              f"{share_of_gain(gain['generator, before the save'], before):.3f}; the save keeps "
              f"{share_of_gain(ref, before):.3f} of the optimiser's gain and "
              f"{share_of_gain(gain['as it is'], gain['generator, before the save']):.3f} of the generator's")


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
