"""``paintguard optimize IMAGE MASK -o OUT.png``: the paper's 20-step protection for one image."""

from __future__ import annotations

import argparse
import time

import torch

from generator.cli_parser import ArgumentParser
from generator.io import read_image, read_mask
from generator.save import check_output_path, save_protected
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import prepare_task, protection_losses, psnr_from_mse


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard optimize", description=__doc__)
    parser.add_argument("image", help="image to protect")
    parser.add_argument("mask", help="mask image of the same size; non-zero pixels are protected")
    parser.add_argument("-o", "--output", required=True, help="protected image (PNG keeps the bound exactly)")
    parser.add_argument("--inpainter", default="lama-tiny", help="shipped name, .safetensors file or LaMa directory")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eps", type=float, default=0.025, help="L_inf bound on the noise")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 0 or not 0 < args.eps <= 1:
        raise ValueError("--steps must be >= 0 and --eps in (0, 1]")
    output = check_output_path(args.output, [args.image, args.mask], args.overwrite)
    image = read_image(args.image)
    mask = read_mask(args.mask, size=tuple(image.shape[-2:]))
    if not mask.any():
        raise ValueError(f"mask '{args.mask}' is empty: nothing to protect")
    inpainter = load_inpainter(args.inpainter, device=args.device)

    config = IterativeConfig(steps=args.steps, eps=args.eps)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    start = time.perf_counter()
    task = prepare_task(inpainter, image[None].to(args.device), mask[None].to(args.device), dilation=config.dilation)
    result = protect_iterative(inpainter, task.image, task.mask, config, generator=generator, task=task)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        unprotected = protection_losses(inpainter, task.image, task, config.weights)
    save_protected(result.protected[0], image, output, args.eps)

    rows = [("none", {k: v[0] for k, v in unprotected.items()})]
    steps = len(result.history["total"])
    rows += [("final" if i == steps - 1 else f"{i}", {k: v[i, 0] for k, v in result.history.items()})
             for i in range(steps)]
    print(f"{'step':>5} {'attack':>8} {'incp':>8} {'hide':>10} {'total':>8}")
    for label, h in rows:
        print(f"{label:>5} {h['attack']:8.4f} {h['incp']:8.4f} {h['hide']:10.6f} {h['total']:8.4f}")
    before, after = psnr_from_mse(rows[0][1]["attack"]), psnr_from_mse(rows[-1][1]["attack"])
    print(f"attack PSNR to the target: {before:.2f} dB unprotected -> {after:.2f} dB protected; "
          f"{seconds:.1f} s; wrote {output}")
    return 0
