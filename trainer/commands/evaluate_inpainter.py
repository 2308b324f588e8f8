"""``paintguard evaluate-inpainter SOURCE``: score an inpainter on held-out images against baselines.

Every image is centre-cropped to ``--size`` and paired with ``--masks-per-image``
fixed seeded LaMa masks, so two runs (and two inpainters) see the same samples.
Reported per method, averaged over samples: PSNR and L1 inside the hole. The
baselines are the mean colour of each image's known pixels (the floor) and
OpenCV's Telea inpainting, radius 3 (a classical method; skipped with a note
when OpenCV is missing). ``--attack`` adds the attackability probe: the
20-step protection's attack PSNR before/after, its success rate at 20 dB, and
the steering gain (see ``trainer.evaluation.attackability``). An image of
``--images`` that cannot be read is named and skipped; the others are scored
and the exit code is 1.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from generator.cli_parser import ArgumentParser, device_option
from generator.io import image_size
from generator.messages import counted, one_line
from generator.protect_items import say
from trainer.data.images import FixedCropDataset, list_images, sample_images
from trainer.evaluation.attackability import SUCCESS_DB, protection_strength, steering_gain
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.losses import masked_mse, psnr_from_mse
from trainer.training.inpainter_losses import hole_l1, mean_colour_fill

Tensor = torch.Tensor
TELEA_RADIUS = 3
CV2_MISSING = "OpenCV is not installed (pip install opencv-python-headless)"


def telea_fill(image: Tensor, mask: Tensor, radius: int = TELEA_RADIUS) -> Tensor:
    """OpenCV's Telea inpainting of each image's hole, on the 8-bit image (what cv2 accepts)."""
    try:
        import cv2
    except ImportError:
        raise RuntimeError(CV2_MISSING) from None
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    holes = (mask[:, 0] > 0).to(torch.uint8).cpu().numpy() * 255
    filled = [cv2.inpaint(p, h, radius, cv2.INPAINT_TELEA) for p, h in zip(pixels, holes)]
    out = torch.from_numpy(np.stack(filled)).permute(0, 3, 1, 2).to(image) / 255
    keep = (mask <= 0).to(image.dtype)
    # known pixels stay exactly the input's (not their 8-bit rounding)
    return keep * image + (1 - keep) * out


@dataclass
class Scores:
    """Per-sample metrics of one method, accumulated over batches."""

    values: dict[str, list[Tensor]] = field(default_factory=dict)

    def add(self, **metrics: Tensor) -> None:
        for name, value in metrics.items():
            self.values.setdefault(name, []).append(value.detach().cpu().reshape(-1))

    def mean(self, name: str) -> float:
        return float(torch.cat(self.values[name]).mean())


def hole_scores(filled: Tensor, image: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-image hole PSNR (dB) and hole L1 of an inpainted batch."""
    return {"psnr": psnr_from_mse(masked_mse(filled, image, mask)), "l1": hole_l1(filled, image, mask)}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard evaluate-inpainter", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="shipped name (e.g. lama-tiny), PaintGuard .safetensors or LaMa model directory")
    parser.add_argument("--size", type=int, default=256, help="square crop size in px (default 256)")
    parser.add_argument("--masks-per-image", type=int, default=2, help="fixed masks per image (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masks (default 0)")
    parser.add_argument("--images", help="folder of held-out images (default: the embedded sample val split)")
    parser.add_argument("--attack", action="store_true", help="also probe how attackable the inpainter is (slower)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", type=device_option, default="cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return evaluate(args)
    except MemoryError:  # numpy's and torch's CPU allocations: one line, not a traceback
        raise RuntimeError(f"out of memory at --size {args.size}; choose a smaller --size or --batch-size") from None


def evaluate(args: argparse.Namespace) -> int:
    """Score the inpainter and the baselines as ``main`` parsed them, and print the tables."""
    # a negative seed would reach numpy as "expected non-negative integer", naming no option
    if args.size < 16 or args.masks_per_image < 1 or args.batch_size < 1 or args.seed < 0:
        raise ValueError("--size must be >= 16, --masks-per-image and --batch-size >= 1, --seed >= 0")
    skipped = 0
    if args.images is None:
        paths, where = sample_images("val"), "the embedded sample val split"
    else:
        if not Path(args.images).is_dir():
            raise ValueError(f"--images '{args.images}' is not a folder" if Path(args.images).exists()
                             else f"image folder '{args.images}' does not exist")
        paths, where = list_images(args.images), f"'{args.images}'"
        if not paths:
            raise ValueError(f"no images found in '{args.images}'")
        paths, skipped = readable(paths)
        if not paths:
            raise ValueError(f"none of the {counted(skipped, 'image')} in '{args.images}' can be read")
    inpainter = load_inpainter(args.source, device=args.device)
    dataset = FixedCropDataset(paths, size=args.size, masks_per_image=args.masks_per_image, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False)

    methods = {str(args.source): Scores(), "mean-colour fill": Scores(),
               f"OpenCV Telea (radius {TELEA_RADIUS})": Scores()}
    model, mean, telea = methods.values()
    attack = Scores()
    telea_note = None
    for batch in loader:
        image = batch["image"].to(args.device)
        mask = (batch["mask"] > 0).float().to(args.device)
        with torch.no_grad():
            model.add(**hole_scores(inpainter(image, mask), image, mask))
        mean.add(**hole_scores(mean_colour_fill(image, mask), image, mask))
        if telea_note is None:
            try:
                telea.add(**hole_scores(telea_fill(image, mask), image, mask))
            except RuntimeError as err:
                telea_note = str(err)
        if args.attack:
            seed = lambda: torch.Generator(device=image.device).manual_seed(args.seed)  # noqa: E731
            strength = protection_strength(inpainter, image, mask, generator=seed())
            attack.add(before=strength.psnr_before, after=strength.psnr_after, success=strength.success,
                       gain=steering_gain(inpainter, image, mask, generator=seed()))

    n = len(dataset)
    unread = f" ({skipped} unreadable skipped)" if skipped else ""
    print(f"{counted(n, 'sample')}: {counted(len(paths), 'image')} from {where}{unread} x "
          f"{counted(args.masks_per_image, 'mask')}, {args.size} px centre crops, mask seed {args.seed}\n")
    print("| method | hole PSNR (dB) | hole L1 |")
    print("|---|---:|---:|")
    for name, scores in methods.items():
        if scores.values:
            print(f"| {name} | {scores.mean('psnr'):.2f} | {scores.mean('l1'):.4f} |")
    if telea_note:
        print(f"\nTelea baseline skipped: {telea_note}")
    if args.attack:
        print(f"\n| attack PSNR before (dB) | attack PSNR after (dB) | success rate (>= {SUCCESS_DB:g} dB) "
              "| steering gain |")
        print("|---:|---:|---:|---:|")
        print(f"| {attack.mean('before'):.2f} | {attack.mean('after'):.2f} | {attack.mean('success'):.0%} "
              f"| {attack.mean('gain'):.3f} |")
    return 1 if skipped else 0


def readable(paths: list[Path]) -> tuple[list[Path], int]:
    """The images that decode whole, and how many did not: each is named on stderr, and the others are scored,
    as in protect's folder mode."""
    kept = []
    for path in paths:
        try:
            image_size(path)
        except ValueError as err:  # ImageReadError and the decompression-bomb refusal: the reason in one line
            say("error", f"{one_line(err)}; skipped")
        else:
            kept.append(path)
    return kept, len(paths) - len(kept)


if __name__ == "__main__":
    from trainer.commands.cli import run_guarded

    sys.exit(run_guarded(main, sys.argv[1:]))
