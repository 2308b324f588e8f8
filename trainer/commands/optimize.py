"""``paintguard optimize IMAGE MASK -o OUT.png``: the paper's 20-step protection for one image.

``--inpainter a,b`` attacks several inpainters at once: every step minimises the mean
of their losses (``--ensemble random``: one of them, drawn per step), and the
losses printed are the means over them, then each one's attack PSNR.
"""

from __future__ import annotations

import argparse
import time

import torch

from generator.cli_parser import ArgumentParser, device_option
from generator.io import read_image, read_mask
from generator.precision import CHOICES, autocast, resolve_dtype, warn_if_emulated
from generator.protector import check_region
from generator.save import check_output_path, save_protected
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.ensemble import ENSEMBLE_MODES, ensemble_losses, prepare_ensemble_task
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import protection_losses, psnr_from_mse


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard optimize", description=__doc__)
    parser.add_argument("image", help="image to protect")
    parser.add_argument("mask", help="mask image of the same size; non-zero pixels are protected")
    parser.add_argument("-o", "--output", required=True, help="protected image (PNG keeps the bound exactly)")
    parser.add_argument("--inpainter", default="lama-tiny",
                        help="shipped name, .safetensors file or LaMa directory; a comma list attacks them all at once")
    parser.add_argument("--ensemble", choices=ENSEMBLE_MODES, default="mean",
                        help="with several inpainters: step on the mean of their losses, or on one drawn per step")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eps", type=float, default=0.025, help="L_inf bound on the noise")
    parser.add_argument("--device", type=device_option, default="cpu")
    parser.add_argument("--dtype", choices=CHOICES, default="float32",
                        help="the inpainters' convolutions (torch.autocast; auto: bfloat16 where the device has it); "
                             "the noise and its bound stay float32")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the optimiser's random start")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1 or not 0 < args.eps <= 1:  # 0 steps wrote the optimiser's random start alone
        raise ValueError("--steps must be >= 1 and --eps in (0, 1]")
    output = check_output_path(args.output, [args.image, args.mask], args.overwrite)
    image = read_image(args.image)
    mask = read_mask(args.mask, size=tuple(image.shape[-2:]))
    check_region(mask, f"mask '{args.mask}'", "protect")  # a full one as paintguard protect refuses it
    sources = [s.strip() for s in args.inpainter.split(",")]
    if not all(sources):
        raise ValueError(f"--inpainter '{args.inpainter}' has an empty entry; give names separated by commas")
    inpainters = [load_inpainter(source, device=args.device) for source in sources]

    config = IterativeConfig(steps=args.steps, eps=args.eps, ensemble=args.ensemble)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    start = time.perf_counter()
    task = prepare_ensemble_task(inpainters, image[None].to(args.device), mask[None].to(args.device),
                                 dilation=config.dilation)
    dtype = resolve_dtype(args.dtype, args.device)
    warn_if_emulated(dtype, args.device)
    with autocast(args.device, dtype):
        result = protect_iterative(inpainters, task.image, task.mask, config, generator=generator, task=task)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        unprotected = ensemble_losses(inpainters, task.image, task, config.weights)
    save_protected(result.protected[0], image, output, args.eps)

    rows = [("none", {k: v[0] for k, v in unprotected.items()})]
    steps = len(result.history["total"])
    rows += [("final" if i == steps - 1 else f"{i}", {k: v[i, 0] for k, v in result.history.items()})
             for i in range(steps)]
    print(f"{'step':>5} {'attack':>8} {'incp':>8} {'hide':>10} {'total':>8}")
    for label, h in rows:
        print(f"{label:>5} {h['attack']:8.4f} {h['incp']:8.4f} {h['hide']:10.6f} {h['total']:8.4f}")
    before, after = psnr_from_mse(rows[0][1]["attack"]), psnr_from_mse(rows[-1][1]["attack"])
    if len(inpainters) > 1:
        with torch.no_grad():
            for source, inpainter, member in zip(sources, inpainters, task.tasks):
                clean = protection_losses(inpainter, task.image, member, config.weights)["attack"][0]
                done = protection_losses(inpainter, result.protected, member, config.weights)["attack"][0]
                print(f"attack PSNR against {source}: {psnr_from_mse(clean):.2f} dB unprotected -> "
                      f"{psnr_from_mse(done):.2f} dB protected")
    mean = f" (of the mean loss over {len(inpainters)} inpainters)" if len(inpainters) > 1 else ""
    print(f"attack PSNR to the target{mean}: {before:.2f} dB unprotected -> {after:.2f} dB protected; "
          f"{seconds:.1f} s; wrote {output}")
    return 0
