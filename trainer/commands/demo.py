"""``paintguard demo``: the main job on the embedded defaults, in a few minutes on a CPU.

1. trains a small generator against lama-tiny for a few minutes (W&B offline),
2. protects the held-out sample photos with the shipped generators (the default
   and the fast one), the one just trained and the 20-step optimiser, and prints
   their metrics and times side by side, with each method's share of the
   optimiser's gain,
3. writes the protected images and a picture of what an inpainter then does.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import torch

from generator.cli_parser import ArgumentParser
from generator.protector import Protector
from generator.resources import project_path
from generator.save import save_protected, write_image
from trainer.commands.train import main as train_main
from trainer.data.images import FixedCropDataset, sample_images
from trainer.evaluation.scoring import generator_method, iterative_method, no_protection, score_methods
from trainer.evaluation.tables import markdown_table
from trainer.inpainting.inpainter import load_inpainter

DEMO_CONFIG = project_path("configs", "generator", "demo.yaml")
DEMO_RUN = Path("runs/demo")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard demo", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo", help="folder for the pictures and the report (the "
                        f"training run, a throwaway one, goes to {DEMO_RUN}/)")
    parser.add_argument("--inpainter", default="lama-tiny")
    parser.add_argument("--generator", default="generator-lama-tiny", help="the shipped generator to compare")
    parser.add_argument("--fast-generator", default="generator-lama-tiny-fast",
                        help="a second, faster shipped generator to compare ('' skips it)")
    parser.add_argument("--train-minutes", type=float, default=3.0, help="budget of the demo training (0 skips it)")
    parser.add_argument("--size", type=int, default=256, help="evaluation crop size")
    return parser


def train_demo_generator(minutes: float) -> Path:
    """A short fit of configs/generator/demo.yaml; returns the exported generator."""
    hours, rest = divmod(int(minutes * 60), 3600)
    budget = f"00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    shutil.rmtree(DEMO_RUN, ignore_errors=True)  # a throwaway run: each demo trains afresh, not beside the last one
    code = train_main(["fit", "--config", str(DEMO_CONFIG), "--trainer.max_time", budget])
    exported = DEMO_RUN / "generator-demo.safetensors"
    if code != 0 or not exported.is_file():
        raise RuntimeError("the demo training did not finish; see the log above")
    return exported


def save_panel(path: Path, rows: list[list[torch.Tensor]]) -> None:
    """A grid of (3,H,W) images, one row per method."""
    grid = torch.cat([torch.cat(row, dim=-1) for row in rows], dim=-2)
    write_image(grid, path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    methods = {"none": no_protection()}
    inpainter = load_inpainter(args.inpainter)
    methods["generator (shipped)"] = generator_method(Protector.from_checkpoint(args.generator))
    if args.fast_generator:
        methods["generator (shipped fast)"] = generator_method(Protector.from_checkpoint(args.fast_generator))
    if args.train_minutes > 0:
        print(f"== training a demo generator for {args.train_minutes:g} minutes (W&B offline, {DEMO_RUN}) ==")
        methods["generator (demo run)"] = generator_method(Protector.from_checkpoint(train_demo_generator(
            args.train_minutes)))
    methods["optimiser (20 steps)"] = iterative_method(inpainter)

    images, masks = FixedCropDataset(sample_images("val"), size=args.size, masks_per_image=1, seed=0).batch()
    print(f"== protecting {len(images)} held-out photos ({args.size} px) against {args.inpainter} ==")
    results = score_methods(inpainter, images, masks, methods)
    table = markdown_table(results, reference="optimiser (20 steps)")
    print(table)
    (out / "report.md").write_text(f"# PaintGuard demo\n\n{table}\n")

    rows = []
    with torch.no_grad():
        for r in results:
            protected = r.protected[:1]
            fill = inpainter(protected, masks[:1])
            name = re.sub(r"[^a-z0-9]+", "-", r.name.lower()).strip("-")  # "generator (shipped fast)": which one
            save_protected(protected[0], images[0], out / f"protected_{len(rows)}_{name}.png", 0.025)
            rows.append([protected[0], ((protected - images[:1])[0] * 20 + 0.5).clamp(0, 1), fill[0]])
    save_panel(out / "panel.png", rows)
    print(f"wrote {out / 'report.md'} and {out / 'panel.png'} (rows: {', '.join(r.name for r in results)}; "
          "columns: protected | noise x20 | inpainted)")
    return 0
