"""``paintguard inpaint IMAGE --mask MASK -o EDITED.png``: what an editor's inpainter makes of an image.

Writes the inpainter's fill of the mask (LaMa's inference: the image outside the mask
kept) and says how far the fill is from the target colour that protection steers it
to. Given ``--original`` (the image before protection), it inpaints that one too and
says how much the protection moved the fill:

    paintguard protect photo.jpg --mask photo_mask.png -o protected.png
    paintguard inpaint protected.png --mask photo_mask.png -o edited.png --original photo.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from generator.cli_parser import ArgumentParser, device_option
from generator.io import read_image, read_mask
from generator.protector import check_region
from generator.save import check_output_path, write_image
from generator.target import colour_name, target_colour
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.losses import masked_mse, psnr_from_mse

TAKEN_OVER_DB = 20.0  # compare's success threshold: a fill this close to the target reads as the solid colour


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard inpaint", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="the image to edit, typically a protected one")
    parser.add_argument("--mask", required=True, help="the region to inpaint: a mask of the same size, non-zero "
                                                      "pixels filled (the protected mask, or one an editor might draw)")
    parser.add_argument("-o", "--output", required=True, help="the edited image (.png, .webp, .jpg, .tif)")
    parser.add_argument("--original", help="the image before protection (same size): it is inpainted too, and the "
                                           "target colour is taken from it, as protection took it")
    parser.add_argument("--inpainter", default="lama-tiny", help="shipped name, .safetensors file or LaMa directory")
    parser.add_argument("--device", type=device_option, default="cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs = [args.image, args.mask] + ([args.original] if args.original else [])
    output = check_output_path(args.output, inputs, args.overwrite)
    image = read_image(args.image)
    mask = read_mask(args.mask, size=tuple(image.shape[-2:]))
    check_region(mask, f"mask '{args.mask}'", "inpaint")
    original = None
    if args.original:
        original = read_image(args.original)
        if original.shape != image.shape:
            raise ValueError(f"--original '{args.original}' is {original.shape[-1]}x{original.shape[-2]} but the "
                             f"image is {image.shape[-1]}x{image.shape[-2]}; give the image before protection")
    inpainter = load_inpainter(args.inpainter, device=args.device)

    batch = torch.stack([image] if original is None else [image, original]).to(args.device)
    masks = mask[None].expand(len(batch), -1, -1, -1).to(batch)
    fills = inpainter(batch, masks)
    # as protection chose it: from the image it protected, so a protected file scores against the same colour
    target = target_colour(batch[-1:])[0]
    attack = masked_mse(fills, target.reshape(1, 3, 1, 1).expand_as(fills), masks)
    write_image(fills[0], output)

    name = Path(str(args.inpainter)).name
    psnr = psnr_from_mse(attack).tolist()
    said = (f"{name}'s fill of the mask scores {psnr[0]:.2f} dB PSNR against solid {colour_name(target)}, the "
            f"target colour ({TAKEN_OVER_DB:g} dB or more reads as solid)")
    if original is not None:
        levels = ((image - original).abs().amax() * 255).item()
        change = 100 * (attack[0] / attack[1].clamp_min(1e-12) - 1).item()
        said += (f"; on the original {psnr[1]:.2f} dB: the attack loss {attack[1]:.4f} -> {attack[0]:.4f} "
                 f"({change:+.1f}%), the two images {levels:.0f} 8-bit levels apart at most")
    print(f"{said}; wrote {output}")
    return 0
