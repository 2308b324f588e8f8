"""Print a training run's validation and attackability curve from its offline W&B files.

    python benchmarks/training_curve.py runs/lama-tiny [--keys val/hole_psnr probe/steering_gain ...]

Reads every ``wandb/offline-run-*`` under the run folder (a resumed fit writes a new
folder), merges their history by global step and prints one Markdown row per step
that logged any of the keys.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generator.cli_parser import ArgumentParser
from trainer.commands.cli import run_guarded
from trainer.training.wandb_logger import read_offline_run

DEFAULT_KEYS = ["val/hole_psnr", "val/meanfill_hole_psnr", "probe/steering_gain", "probe/attack_psnr_before",
                "probe/attack_psnr_after", "probe/success_rate"]


def curve(run_dir: Path, keys: list[str]) -> dict[int, dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    for folder in sorted(run_dir.glob("wandb/offline-run-*")):
        for record in read_offline_run(folder).history:
            values = {k: record[k] for k in keys if isinstance(record.get(k), (int, float))}
            step = record.get("trainer/global_step")
            if values and step is not None:
                rows.setdefault(int(step), {}).update(values)
    return dict(sorted(rows.items()))


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a training run's folder (its W&B logs)")
    parser.add_argument("--keys", nargs="+", default=DEFAULT_KEYS, help="the logged metrics tabulated")
    args = parser.parse_args()
    # an empty table would read as "this run logged nothing", not as a wrong folder or key
    if not args.run_dir.is_dir():
        parser.error(f"run folder '{args.run_dir}' " + ("is a file" if args.run_dir.exists() else "does not exist"))
    if not any(args.run_dir.glob("wandb/offline-run-*")):
        parser.error(f"'{args.run_dir}' holds no wandb/offline-run-* folder: give a training run's folder, "
                     "e.g. runs/lama-tiny")
    rows = curve(args.run_dir, args.keys)
    if not rows:
        parser.error(f"no step of '{args.run_dir}' logged any of {', '.join(args.keys)}")
    print("| step | " + " | ".join(args.keys) + " |")
    print("|---|" + "---|" * len(args.keys))
    for step, values in rows.items():
        cells = [f"{values[k]:.3f}" if k in values else "" for k in args.keys]
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
