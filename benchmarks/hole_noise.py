"""What cutting a direct head's noise to zero in the hole did (session 42), on the same samples.

    python benchmarks/hole_noise.py [--generator generator-lama-tiny-fast] [--splits val]
        [--transforms png jpeg90 jpeg75 resize-half blur-1 noise-0.01]

``NoiseUNet.bounded`` multiplies a direct head's noise by ``1 - mask``: the inpainter never sees the hole in the
attack and incp edits, and the gradient heads give zero there by construction. This protects each split's samples
(those of ``amortisation.py``, whose reference cache it shares) with the generator as shipped ("cut") and with
``eps * tanh(raw)`` of the same pass ("uncut"), then scores both, after each transformation of the robustness
comparison, against the 20-step optimiser's gain under the same transformation. It prints, per split, one row per
transformation: both shares, their paired difference with a 95% interval, and the hide and noise PSNR with the
range of their per-sample change. Choices are made on "val"; "test" is for final figures only.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import Tensor, nn

from amortisation import OPTIMISER, add_sample_arguments, split_samples
from generator.cli_parser import ArgumentParser
from generator.messages import counted
from generator.protector import Protector
from trainer.commands.cli import run_guarded
from trainer.evaluation.scoring import generator_method, run_method, score_runs
from trainer.evaluation.tables import paired_share_difference
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.metrics import share_of_gain
from trainer.objective.transforms import get_transform

TRANSFORMS = ["png", "jpeg90", "jpeg75", "resize-half", "blur-1", "noise-0.01"]


class Uncut(nn.Module):
    """A direct-head generator's noise as it was before the cut: ``eps * tanh(raw)`` everywhere, hole included."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.config = net, net.config

    def forward(self, image: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        return self.config.eps * torch.tanh(self.net.noise_and_raw(image, mask, target)[1])


def _change(before: Tensor, after: Tensor) -> str:
    d = after - before
    return f"{before.mean():.2f} -> {after.mean():.2f} ({d.min():+.2f} to {d.max():+.2f})"


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="generator-lama-tiny-fast", help="a direct-head generator")
    parser.add_argument("--splits", nargs="+", default=["val"])
    parser.add_argument("--transforms", nargs="+", default=TRANSFORMS, help="the transformations scored after the save")
    add_sample_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        cut = Protector.from_checkpoint(args.generator)
    except ValueError as err:
        parser.error(str(err))
    if cut.net.config.head != "direct":
        parser.error(f"{args.generator} has a {cut.net.config.head} head, whose noise is zero in the hole anyway")
    uncut = Protector(Uncut(cut.net))
    inpainter = load_inpainter(args.inpainter)
    for split in args.splits:
        images, masks, references = split_samples(parser, args, inpainter, split)
        optimiser = next(run for run in references if run.name == OPTIMISER)
        runs = [optimiser] + [run_method(name, generator_method(p), images, masks, warmup=False)
                              for name, p in (("uncut", uncut), ("cut", cut))]
        print(f"\n## {split}: {counted(len(images), 'sample')}, {args.generator} against {args.inpainter}\n")
        print("| transformation | share uncut | share cut | cut minus uncut (paired) | hide PSNR (dB) | noise PSNR (dB) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in args.transforms:
            scores = score_runs(inpainter, images, masks, runs, transform=get_transform(name))
            teacher, before, after = (scores[run.name] for run in runs)
            diff = paired_share_difference(after["attack_gain"], before["attack_gain"], teacher["attack_gain"])
            print(f"| {name} | {share_of_gain(before['attack_gain'], teacher['attack_gain']):.3f} "
                  f"| {share_of_gain(after['attack_gain'], teacher['attack_gain']):.3f} "
                  f"| {diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] "
                  f"| {_change(before['hide_psnr'], after['hide_psnr'])} "
                  f"| {_change(before['noise_psnr'], after['noise_psnr'])} |", flush=True)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
