"""``paintguard teacher-cache``: run the 20-step optimiser once over training crops, for distillation.

The cache (``trainer/training/teacher_cache.py``) stores the crops (8-bit), masks and
teacher noises in one safetensors file, with the inpainter's weight fingerprint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generator.cli_parser import ArgumentParser, device_option
from generator.save import check_creatable
from generator.signals import Stopped
from trainer.training.teacher_cache import build_teacher_cache, is_teacher_cache


def check_out(out: Path) -> None:
    """Refuse, before the optimiser runs, an --out that cannot be written or would replace another kind of file."""
    if out.is_dir():
        raise ValueError(f"--out '{out}' is a folder; give the safetensors file to write")
    if out.suffix != ".safetensors":  # 'runs/tc/' was written as a file named 'runs/tc'
        raise ValueError(f"--out must be a .safetensors file, got '{out}'")
    check_creatable(out)
    # rebuilding a cache in place is the documented fix for a stale one; anything else may be an input
    if out.exists() and not is_teacher_cache(out):
        raise ValueError(f"--out '{out}' exists and is not a teacher cache; refusing to replace it")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="paintguard teacher-cache", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inpainter", default="lama-tiny")
    parser.add_argument("--out", required=True,
                        help="safetensors file to write (an existing teacher cache is replaced)")
    parser.add_argument("--count", type=int, default=128, help="number of (crop, mask) pairs")
    parser.add_argument("--size", type=int, default=128, help="crop size in pixels")
    parser.add_argument("--train-dir", default=None, help="image folder (default: the embedded sample images)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=device_option, default="cpu")
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 16:
        raise ValueError("--count must be >= 1 and --size >= 16")
    if args.steps < 1 or args.batch_size < 1:
        raise ValueError(f"--steps and --batch-size must be >= 1, got {args.steps} and {args.batch_size}")
    check_out(Path(args.out))
    try:
        out = build_teacher_cache(args.inpainter, args.out, args.count, args.size, args.seed, args.train_dir,
                                  args.batch_size, args.steps, args.device)
    except (KeyboardInterrupt, Stopped) as stop:  # the file is written whole at the end, or not at all
        stop.add_note(f"'{args.out}' was not written" + (" (the cache there is as it was)" if
                                                          Path(args.out).exists() else ""))
        raise
    print(json.dumps({"wrote": str(out), "pairs": args.count, "size": args.size}))
    return 0
