"""Per-image time of the 20-step optimiser at 256x256 on this machine.

    python benchmarks/optimizer_speed.py [--size 256] [--steps 20] [--threads N] [--dtypes float32 bfloat16]

Times big-lama (random weights: speed does not depend on their values) and the
lama-tiny architecture, one image at a time, after one warm-up step; the forward pass is the median of 10.
With several ``--dtypes`` each model is timed in each, its convolutions under ``torch.autocast``
(``paintguard optimize --dtype``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from generator.cli_parser import ArgumentParser
from generator.precision import DTYPES, autocast
from trainer.commands.cli import run_guarded
from trainer.inpainting.ffc import FFCResNetConfig
from trainer.inpainting.inpainter import build_inpainter
from trainer.objective.iterative import IterativeConfig, protect_iterative

MODELS = {
    "big-lama": FFCResNetConfig(),
    "lama-tiny": FFCResNetConfig(ngf=32, n_downsampling=3, n_blocks=6),
}


FORWARD_REPEATS = 10  # one forward pass is ~0.1 s: a single timing is at the mercy of the scheduler


def time_optimizer(config: FFCResNetConfig, size: int, steps: int, dtype: str = "float32") -> tuple[float, float]:
    """Seconds for one image: (20-step optimiser, median time of one inpainter forward pass)."""
    with autocast("cpu", getattr(torch, dtype)):
        return _time_optimizer(build_inpainter(config), size, steps)


def _time_optimizer(inpainter: torch.nn.Module, size: int, steps: int) -> tuple[float, float]:
    image = torch.rand(1, 3, size, size)
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4: size // 2, size // 4: 3 * size // 4] = 1
    protect_iterative(inpainter, image, mask, IterativeConfig(steps=1))  # warm-up
    start = time.perf_counter()
    protect_iterative(inpainter, image, mask, IterativeConfig(steps=steps))
    optimise = time.perf_counter() - start
    with torch.inference_mode():
        times = []
        for _ in range(FORWARD_REPEATS):
            start = time.perf_counter()
            inpainter(image, mask)
            times.append(time.perf_counter() - start)
    return optimise, statistics.median(times)


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), help="the inpainters timed")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=DTYPES, help="the convolutions' precisions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}, {args.steps} steps")
    print(f"| model | parameters | dtype | forward (s) | {args.steps}-step optimiser (s/image) |")
    print("|---|---|---|---|---|")
    for name in args.models:
        cfg = MODELS[name]
        params = sum(p.numel() for p in build_inpainter(cfg).parameters())
        for dtype in args.dtypes:
            optimise, forward = time_optimizer(cfg, args.size, args.steps, dtype)
            print(f"| {name} | {params / 1e6:.2f} M | {dtype} | {forward:.3f} | {optimise:.1f} |", flush=True)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
