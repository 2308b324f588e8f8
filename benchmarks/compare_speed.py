"""Time the optimiser, the generator and hybrids on the same images, in one run on this machine.

    python benchmarks/compare_speed.py [--inpainter lama-tiny] [--generator generator-lama-tiny]
                                       [--size 256] [--images 3] [--k 2 5] [--repeats 1] [--device cpu]
                                       [--dtypes float32 bfloat16] [--optimiser-bfloat16]

Every method protects the same held-out photos (centre crops, seeded masks), one
image per call, after a warm-up call; the time per image is the median over the
calls. Prints the times and each method's speed-up over the 20-step optimiser (float32, first).
``--dtypes`` times the generator and the hybrids in each precision (``paintguard protect --dtype``; the
hybrid's optimiser steps with their convolutions in it); ``--optimiser-bfloat16``
also the optimiser with the inpainter's convolutions in bfloat16 (autocast), the like-for-like reference for a
bfloat16 generator (``amortisation.py --optimiser-bfloat16`` scores its strength).
Only speed: ``paintguard compare`` measures how strong each method is.
"""

from __future__ import annotations

import argparse
import sys

import torch

from generator.cli_parser import ArgumentParser, positive_int
from generator.messages import counted
from generator.precision import DTYPES, labelled
from generator.protector import Protector
from trainer.commands.cli import run_guarded
from trainer.data.images import FixedCropDataset, sample_images
from trainer.evaluation.scoring import autocast_method, generator_method, hybrid_method, iterative_method, run_method
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.iterative import IterativeConfig


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inpainter", default="lama-tiny", help="shipped name, .safetensors file or LaMa folder")
    parser.add_argument("--generator", default="generator-lama-tiny", help="shipped name or .safetensors file")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=positive_int, default=3, help="held-out photos to time on (at most 5)")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps")
    parser.add_argument("--k", type=int, nargs="*", default=[2, 5], help="optimiser steps of the hybrids")
    parser.add_argument("--repeats", type=positive_int, default=1, help="timed calls per image")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["float32"], help="the generator's precisions")
    parser.add_argument("--optimiser-bfloat16", action="store_true", help="also time the optimiser in bfloat16")
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    inpainter = load_inpainter(args.inpainter, device=args.device)
    protectors = {dtype: Protector.from_checkpoint(args.generator, device=args.device, dtype=getattr(torch, dtype))
                  for dtype in args.dtypes}
    images, masks = FixedCropDataset(sample_images("val")[:args.images], size=args.size).batch()
    images, masks = list(images), list(masks)
    optimiser = f"optimiser ({args.steps} steps)"
    methods = {optimiser: iterative_method(inpainter, IterativeConfig(steps=args.steps))}
    if args.optimiser_bfloat16:
        methods[labelled("optimiser", f"{args.steps} steps", "bfloat16")] = autocast_method(methods[optimiser],
                                                                                          torch.bfloat16)
    methods.update({labelled("generator", dtype): generator_method(p)
                    for dtype, p in protectors.items()})
    methods.update({labelled("hybrid", f"k={k}", dtype):
                    hybrid_method(p, inpainter, k) for dtype, p in protectors.items() for k in args.k})

    print(f"torch {torch.__version__}, {args.device}, {args.threads} CPU thread(s), {counted(len(images), 'image')} of "
          f"{args.size}x{args.size}, one per call, {args.repeats} timed call(s) each after a warm-up")
    print("| method | s / image | images / s | speed-up over the optimiser |")
    print("|---|---|---|---|")
    reference = None
    for name, method in methods.items():
        run = run_method(name, method, images, masks, batch_size=1, repeats=args.repeats, device=args.device)
        reference = reference or run.seconds_per_image
        print(f"| {name} | {run.seconds_per_image:.4g} | {run.images_per_second:.3g} "
              f"| {reference / run.seconds_per_image:.1f}x |", flush=True)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
