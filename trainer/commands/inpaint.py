"""``paintguard inpaint IMAGE --mask MASK -o EDITED.png``: what an editor's inpainter makes of an image.

Writes the inpainter's fill of the mask (LaMa's inference: the image outside the mask
kept) and says how far the fill is from the target colour that protection steers it
to. Given ``--original`` (the image before protection), it inpaints that one too and
says how much the protection moved the fill:

    paintguard protect photo.jpg --mask photo_mask.png -o protected.png
    paintguard inpaint protected.png --mask photo_mask.png -o edited.png --original photo.jpg

A folder is edited image by image, one line each and a summary
(``trainer.commands.inpaint_folder``):

    paintguard protect photos/ -o protected/
    paintguard inpaint protected/ --original photos/ -o edited/   # masks: NAME_mask.png beside the originals
    paintguard inpaint photos/ -o edited-originals/                # masks beside the images
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from generator.cli_parser import ArgumentParser, device_option, mask_suffix_option
from generator.io import read_image, read_mask
from generator.protector import check_region
from generator.save import check_output_path, check_skip_existing, write_image
from generator.target import colour_name, target_colour
from trainer.evaluation.editor_masks import DRAWN, EDITOR_MASKS, get_editor_mask
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.losses import masked_mse, psnr_from_mse

TAKEN_OVER_DB = 20.0  # compare's success threshold: a fill this close to the target reads as the solid colour


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard inpaint", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="the image to edit, typically a protected one, or a folder of them")
    parser.add_argument("--mask", help="one image: the region to inpaint, a mask of the same size, non-zero "
                                       "pixels filled (the protected mask, or one an editor might draw)")
    parser.add_argument("-o", "--output", required=True, help="the edited image (.png, .webp, .jpg, .tif; an existing "
                        "folder: NAME.png in it), or for a folder the folder of edits (PNG, sub-folders mirrored)")
    parser.add_argument("--original", help="the image before protection (same size): it is inpainted too, and the "
                                           "target colour is taken from it, as protection took it; for a folder, "
                                           "the folder protected (NAME.ext beside NAME_mask*.png)")
    parser.add_argument("--mask-suffix", default="_mask", type=mask_suffix_option,
                        help="folder: masks are NAME{suffix}*.png")
    parser.add_argument("--editor-mask", choices=list(EDITOR_MASKS), help="inpaint the mask as an editor might draw "
                        "it instead: " + ", ".join(f"{name} {drawn}" for name, drawn in DRAWN.items()))
    parser.add_argument("--inpainter", default="lama-tiny", help="shipped name, .safetensors file or LaMa directory")
    parser.add_argument("--device", type=device_option, default="cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--skip-existing", action="store_true",
                        help="folder: leave the images whose edit exists (a rerun finishes a stopped run)")
    parser.add_argument("--csv", metavar="FILE.csv", help="folder: also write the figures to this CSV, one row per "
                        "image (failed ones with their reason); a rerun with --skip-existing adds to it")
    return parser


@dataclass
class Edit:
    """An inpainter's edit of one image, scored as the optimiser scores it; ``original_*`` when an original was
    given (the same mask inpainted in the image before protection)."""

    edited: torch.Tensor  # (3,H,W): the fill in the mask, the image outside it
    colour: str  # the target colour's name
    attack: float  # the attack loss: the fill's mean squared distance to the target colour
    psnr: float
    original_attack: float | None = None
    original_psnr: float | None = None
    change: float | None = None  # the attack loss's change from the original's, in percent
    levels: float | None = None  # the largest difference between the two images, in 8-bit levels


@torch.no_grad()
def edit(inpainter: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor,
         original: torch.Tensor | None = None) -> Edit:
    """Inpaint ``mask`` (1,H,W) in ``image`` (3,H,W), and in ``original`` if given, on the inpainter's device."""
    device = next(inpainter.parameters()).device
    batch = torch.stack([image] if original is None else [image, original]).to(device)
    masks = mask[None].expand(len(batch), -1, -1, -1).to(batch)
    fills = inpainter(batch, masks)
    # as protection chose it: from the image it protected, so a protected file scores against the same colour
    target = target_colour(batch[-1:])[0]
    attack = masked_mse(fills, target.reshape(1, 3, 1, 1).expand_as(fills), masks)
    psnr = psnr_from_mse(attack).tolist()
    result = Edit(fills[0].cpu(), colour_name(target), attack[0].item(), psnr[0])
    if original is not None:
        result.original_attack, result.original_psnr = attack[1].item(), psnr[1]
        result.change = 100 * (attack[0] / attack[1].clamp_min(1e-12) - 1).item()
        result.levels = ((image - original).abs().amax() * 255).item()
    return result


def editors_mask(mask: torch.Tensor, name: str | None, what: str) -> torch.Tensor:
    """The region to inpaint: ``mask`` (1,H,W) of ``what``, or the editor's mask ``name`` drawn from it; refused
    when it is empty or covers the whole image."""
    if name is not None:
        mask = get_editor_mask(name)(mask[None])[0]
    check_region(mask, what + drawn(name), "inpaint")
    return mask


def drawn(name: str | None) -> str:
    """What the lines add to a mask's name for editor's mask ``name``: how it is drawn from it."""
    return "" if name is None else f" drawn {DRAWN[name]} ({name})"


def which_mask(name: str | None) -> str:
    """How the lines name the region inpainted."""
    return "the mask" + drawn(name)


def check_original(original: torch.Tensor, image: torch.Tensor, path: str | Path) -> None:
    """Refuse an original of another size than the image."""
    if original.shape != image.shape:
        raise ValueError(f"--original '{path}' is {original.shape[-1]}x{original.shape[-2]} but the image is "
                         f"{image.shape[-1]}x{image.shape[-2]}; give the image before protection")


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if Path(args.image).is_dir():
        from trainer.commands.inpaint_folder import inpaint_folder

        return inpaint_folder(args)
    if not args.mask:
        parser.error("the following arguments are required for one image: --mask (a folder's masks are "
                     "NAME_mask*.png beside each image)")
    check_skip_existing(args.skip_existing, args.overwrite, folder=False)
    if args.csv:
        raise ValueError("--csv is for a folder; one image's figures are the line it prints")
    if args.original and Path(args.original).is_dir():
        raise ValueError(f"--original '{args.original}' is a folder but the image is one file; give its original")
    inputs = [args.image, args.mask] + ([args.original] if args.original else [])
    output = Path(args.output)
    if output.is_dir():  # as protect does: the image's name, as a PNG, in that folder
        output = output / f"{Path(args.image).stem}.png"
    output = check_output_path(output, inputs, args.overwrite)
    image = read_image(args.image)
    mask = editors_mask(read_mask(args.mask, size=tuple(image.shape[-2:])), args.editor_mask, f"mask '{args.mask}'")
    original = None
    if args.original:
        original = read_image(args.original)
        check_original(original, image, args.original)
    inpainter = load_inpainter(args.inpainter, device=args.device)
    result = edit(inpainter, image, mask, original)
    write_image(result.edited, output)

    said = (f"{inpainter_name(args.inpainter)}'s fill of {which_mask(args.editor_mask)} scores {result.psnr:.2f} dB "
            f"PSNR against solid {result.colour}, the target colour ({TAKEN_OVER_DB:g} dB or more reads as solid)")
    if original is not None:
        said += (f"; on the original {result.original_psnr:.2f} dB: the attack loss {result.original_attack:.4f} -> "
                 f"{result.attack:.4f} ({result.change:+.1f}%), the two images {result.levels:.0f} 8-bit levels "
                 "apart at most")
    print(f"{said}; wrote {output}")
    return 0


def inpainter_name(source: str | Path) -> str:
    """How the lines name the inpainter: a shipped name, or a file's or folder's name."""
    return Path(str(source)).name
