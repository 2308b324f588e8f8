"""Does a generator underfit or overfit the direction it must learn? Sign agreement with one FGSM step.

    python benchmarks/sign_agreement.py --generator FILE [--generator FILE ...] [--cache runs/gradient-cache-128]
        [--train-entries 256] [--val-photos 6] [--size 128]

One FGSM step, ``-eps * sign(g)``, keeps most of the optimiser's gain, so the share of
pixels where a generator's noise has the sign of ``-g`` (plain, and weighted by |g|)
measures how well it learned that direction. It is computed on entries of the gradient
cache the generator trained on ("train") and on fresh crops of the validation photos
("val", gradient taken here): equal and low means underfitting (capacity or training),
high on train and low on val means overfitting (data).
"""

from __future__ import annotations

import argparse
import sys

import torch

from generator import load_generator
from generator.cli_parser import ArgumentParser
from generator.target import target_colour
from trainer.commands.cli import run_guarded
from trainer.data.images import FixedCropDataset
from trainer.data.splits import split_paths
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.fgsm import input_gradient
from trainer.objective.losses import prepare_task
from trainer.training.gradient_cache import GradientCache


def agreement(noise: torch.Tensor, grad: torch.Tensor) -> tuple[float, float]:
    """Share of pixels with sign(noise) == -sign(g): plain, and weighted by |g|."""
    agree = (torch.sign(noise) == -torch.sign(grad)).float()
    return float(agree.mean()), float((agree * grad.abs()).sum() / grad.abs().sum())


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", required=True)
    parser.add_argument("--cache", default="runs/gradient-cache-128",
                        help="a gradient cache (paintguard gradient-cache)")
    parser.add_argument("--train-entries", type=int, default=256, help="the cache's first N entries")
    parser.add_argument("--val-photos", type=int, default=6, help="val photos, 4 masks each")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--inpainter", default="lama-tiny")
    args = parser.parse_args()
    cache = GradientCache(args.cache)
    n = min(args.train_entries, len(cache))
    train_x = cache.data["image"][:n].float() / 255
    train_m, train_g = cache.data["mask"][:n].float(), cache.data["grad"][:n].float()
    inpainter = load_inpainter(args.inpainter)
    val_x, val_m = FixedCropDataset(split_paths("val")[:args.val_photos], size=args.size, masks_per_image=4).batch()
    val_x = torch.round(val_x * 255) / 255
    val_g = input_gradient(inpainter, prepare_task(inpainter, val_x, val_m))
    print("| generator | train: agreement | train: |g|-weighted | val: agreement | val: |g|-weighted |")
    print("|---|---|---|---|---|")
    for name in args.generator:
        net = load_generator(name)
        with torch.no_grad():
            rows = []
            for x, m, g in ((train_x, train_m, train_g), (val_x, val_m, val_g)):
                noise = torch.cat([net(x[i:i + 32], m[i:i + 32], target_colour(x[i:i + 32]))
                                   for i in range(0, len(x), 32)])
                rows += agreement(noise, g)
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in rows) + " |")


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
