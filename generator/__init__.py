"""PaintGuard's inference side: the noise U-Net and single-pass protection.

    from generator import Protector
    protector = Protector.from_checkpoint("generator-lama-tiny")
    protected = protector.protect("photo.jpg", "photo_mask.png")  # a PIL image, within the bound

It imports ``trainer`` only lazily, for the optimiser-backed methods ("iterative", "hybrid", "refine").
"""

from generator.precision import native_bfloat16, resolve_dtype
from generator.protector import Protector, load_generator, save_generator
from generator.target import target_colour
from generator.unet import NoiseUNet, UNetConfig

__all__ = ["NoiseUNet", "Protector", "UNetConfig", "load_generator", "native_bfloat16", "resolve_dtype",
           "save_generator", "target_colour"]
