"""``paintguard gradient-cache --out DIR --count N``: cache the inpainter's input gradients over training crops.

Grows DIR to N entries (whole shards): run it again with a larger --count to append,
or after an interruption to resume. See ``trainer/training/gradient_cache.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generator.cli_parser import ArgumentParser, device_option
from generator.save import check_folder_out
from generator.signals import Stopped
from trainer.inpainting.inpainter import load_inpainter
from trainer.training.gradient_cache import GradientCache, build_gradient_cache, shard_files


def check_field_layers(inpainter: str, k: int) -> None:
    """``--field-layers k`` names one of the layers an encoder-gradient head can carry: the stem and the stride-2
    layers. Checked before the inpainter's first batch, which a larger k would fail in with an IndexError."""
    if k > 0:
        most = 1 + load_inpainter(inpainter).config.n_downsampling
        if k > most:
            raise ValueError(f"--field-layers must be at most {most} for '{inpainter}' (its stem and "
                             f"{most - 1} stride-2 layers), got {k}")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="paintguard gradient-cache", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="cache folder (created, or grown if it exists)")
    parser.add_argument("--count", type=int, default=1024, help="entries the folder should hold at least")
    parser.add_argument("--inpainter", default="lama-tiny")
    parser.add_argument("--images", default="split:train",
                        help="an image folder or a photo split, e.g. split:train (default; needs 'make photos')")
    parser.add_argument("--size", type=int, default=128, help="crop size in pixels")
    parser.add_argument("--teacher-steps", type=int, default=0, help="also store the noise of a k-step optimiser")
    parser.add_argument("--field-layers", type=int, default=0,
                        help="also store the field at the inpainter's layer k that an encoder-gradient head takes "
                             "(4 for generator-lama-tiny; 0: none)")
    parser.add_argument("--field-teacher", default=None,
                        help="an encoder-gradient generator (e.g. generator-lama-tiny): store its field after "
                             "--field-steps optimiser steps on it, and the noise it gives, as the entry's field and "
                             "teacher noise")
    parser.add_argument("--field-steps", type=int, default=10, help="steps on the field teacher's field")
    parser.add_argument("--shard-size", type=int, default=64,
                        help="entries per file (an interrupted build resumes at its last whole one)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=device_option, default="cpu")
    args = parser.parse_args(argv)
    check_folder_out(Path(args.out), "cache folder")  # before anything is computed
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_field_layers(args.inpainter, args.field_layers)
    try:
        folder = build_gradient_cache(args.out, args.inpainter, args.images, args.count, args.size, args.seed,
                                      args.teacher_steps, args.shard_size, args.batch_size, args.device,
                                      args.field_layers, args.field_teacher, args.field_steps)
    except (KeyboardInterrupt, Stopped) as stop:
        kept = len(shard_files(Path(args.out)))
        stop.add_note(f"{kept} whole shard(s) of {args.shard_size} entries kept in '{args.out}'; the same command "
                      "goes on from there")
        raise
    print(json.dumps({"cache": str(folder), "entries": len(GradientCache(folder))}))
    return 0
