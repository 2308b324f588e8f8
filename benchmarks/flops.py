"""Where the generator's speed-up over the optimiser comes from: floating-point operations, not timings.

    python benchmarks/flops.py [--generator generator-lama-tiny ...] [--inpainter lama-tiny] [--size 256]
        [--steps 20] [--target 500]

Counts the multiply-adds (as 2 FLOPs, ``torch.utils.flop_counter``) of one protection by the 20-step optimiser,
of one pass of each generator, split into its U-Net and the frozen copy of the target's layers that an
encoder- or stem-gradient head runs forwards and backwards, and of one inpainter forward. It prints each
generator's FLOP ratio to the optimiser and the FLOPs a pass may take for ``--target`` times. The counter
sees convolutions and matrix products; lama-tiny's Fourier transforms (its global branch, at 1/8 resolution)
and elementwise work are left out, so the optimiser's count is a slight underestimate. In session 32 the default's
measured speed-up (``benchmarks/amortisation.py``, one thread) was 246x against a FLOP ratio of 255x: both
sides spend their time in convolutions at a similar rate, so a faster machine leaves the ratio where it is and
only a pass with fewer FLOPs moves it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from generator.cli_parser import ArgumentParser
from generator.checkpoint import check_kind
from generator.protector import load_generator
from generator.target import target_colour
from trainer.commands.cli import run_guarded
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.iterative import IterativeConfig, protect_iterative


def flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn``."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def generator_flops(name: str, image: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """(the whole pass, its U-Net alone) for the generator ``name``."""
    net = load_generator(name).eval()
    with torch.no_grad():
        total = flops(lambda: net(image, mask, target))
        encoding = net.target_encoder.encode(image, mask) if net.target_encoder is not None else None
        # the U-Net up to its output convolution; an encoder-gradient head's layers already run (``encoding``)
        unet = flops(lambda: net.head(net._features(image, mask, target, encoding)))
    return total, unet


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", help="shipped name or file; repeatable "
                        "(default: generator-lama-tiny, generator-lama-tiny-stem, generator-lama-tiny-fast)")
    parser.add_argument("--inpainter", default="lama-tiny")
    parser.add_argument("--size", type=int, default=256, help="square image side in pixels")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps")
    parser.add_argument("--target", type=float, default=500, help="the speed-up to budget a pass for")
    args = parser.parse_args()
    if args.size < 32 or args.steps < 1 or args.target <= 0:
        raise ValueError("--size must be >= 32, --steps >= 1 and --target > 0")
    names = args.generator or ["generator-lama-tiny", "generator-lama-tiny-stem", "generator-lama-tiny-fast"]
    for name in names:  # before the optimiser's count, which takes half a minute
        check_kind(name, "generator")

    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, args.size, args.size, generator=g)  # FLOPs depend on the size, not the content
    mask = torch.zeros(1, 1, args.size, args.size)
    mask[..., args.size // 3:args.size // 2, args.size // 3:args.size // 2] = 1
    target = target_colour(image)

    inpainter = load_inpainter(args.inpainter)
    with torch.no_grad():
        forward = flops(lambda: inpainter(image, mask))
    optimiser = flops(lambda: protect_iterative(inpainter, image, mask, IterativeConfig(steps=args.steps),
                                                target=target))
    print(f"{args.size}x{args.size}, against {args.inpainter}: one forward {forward / 1e9:.2f} GFLOP; the "
          f"{args.steps}-step optimiser {optimiser / 1e9:.1f} GFLOP ({optimiser / forward:.0f} forwards)\n")
    print(f"| generator | pass (GFLOP) | U-Net | the target's layers (head) | optimiser / pass | "
          f"budget for {args.target:g}x |\n|---|---:|---:|---:|---:|---:|")
    budget = optimiser / args.target
    for name in names:
        total, unet = generator_flops(name, image, mask, target)
        print(f"| {name} | {total / 1e9:.2f} | {unet / 1e9:.2f} | {(total - unet) / 1e9:.2f} | "
              f"{optimiser / total:.0f}x | {budget / 1e9:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
