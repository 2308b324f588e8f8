"""How close a generator's edits come to the teacher's: output distillation's own measure, on cached entries.

    python benchmarks/fill_distance.py --generator FILE [--generator FILE ...] [--cache runs/teacher-cache-128]
        [--entries 128]

On entries of a cache built with teacher noises (``paintguard gradient-cache --teacher-steps 20``),
every image is protected by each generator and by the cached 20-step noise, both 8-bit rounded within the
bound. Per generator it prints the fill distance (``protection_losses``' "output": the squared distance of
the fills of m and E(m) to the teacher's, the term ``model.output_weight`` trains), the attack loss and the
share of the teacher's attack gain on those entries. A generator trained with output distillation should
sit closer to the teacher's fills; whether that buys share is the question it answers.
"""

from __future__ import annotations

import argparse
import sys

import torch

from generator import load_generator
from generator.cli_parser import ArgumentParser
from trainer.commands.cli import run_guarded
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.losses import prepare_task, protection_losses, reference_fills
from trainer.objective.metrics import share_of_gain
from trainer.objective.transforms import round_to_8bit
from trainer.training.gradient_cache import GradientCache


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", required=True)
    parser.add_argument("--cache", default="runs/teacher-cache-128", help="a teacher cache (paintguard teacher-cache)")
    parser.add_argument("--entries", type=int, default=128, help="the cache's first N entries")
    parser.add_argument("--inpainter", default="lama-tiny")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = GradientCache(args.cache)
    if "teacher" not in cache.data:
        raise ValueError(f"{args.cache} holds no teacher noises (build it with --teacher-steps 20)")
    n = min(args.entries, len(cache))
    image = cache.data["image"][:n].float() / 255
    mask, teacher_noise = cache.data["mask"][:n].float(), cache.data["teacher"][:n].float()
    inpainter = load_inpainter(args.inpainter)
    cache.check_inpainter(inpainter)
    rows = {}
    with torch.no_grad():
        task = prepare_task(inpainter, image, mask)
        teacher = round_to_8bit((image + teacher_noise).clamp(0, 1), straight_through=False)
        reference = reference_fills(inpainter, teacher, task)
        clean = protection_losses(inpainter, image, task, reference=reference)
        rows["teacher (20 steps)"] = protection_losses(inpainter, teacher, task, reference=reference)
        for name in args.generator:
            noise = load_generator(name)(image, task.mask, task.target)
            protected = round_to_8bit((image + noise).clamp(0, 1), straight_through=False)
            rows[name] = protection_losses(inpainter, protected, task, reference=reference)
    teacher_gain = clean["attack"] - rows["teacher (20 steps)"]["attack"]
    print(f"{n} entries of {args.cache}")
    print("| method | fill distance to the teacher's | attack loss | share of the teacher's attack gain |")
    print("|---|---:|---:|---:|")
    for name, losses in {"none": clean, **rows}.items():
        share = share_of_gain(clean["attack"] - losses["attack"], teacher_gain)
        print(f"| {name} | {losses['output'].mean():.5f} | {losses['attack'].mean():.4f} | {share:.3f} |")


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
