"""PaintGuard's inference side: the noise U-Net and single-pass protection.

    from generator import Protector
    protector = Protector.from_checkpoint("generator-lama-tiny")
    protected = protector.protect("photo.jpg", "photo_mask.png")  # a PIL image, within the bound

It imports ``trainer`` only lazily, for the optimiser-backed methods ("iterative", "hybrid", "refine"), and its
own public names (``__all__``) on first use, so that ``import generator`` does not load torch.
"""

from generator.lazy import lazy_exports

_EXPORTS = {
    "NoiseUNet": "generator.unet",
    "UNetConfig": "generator.unet",
    "Protector": "generator.protector",
    "load_generator": "generator.protector",
    "save_generator": "generator.protector",
    "native_bfloat16": "generator.precision",
    "resolve_dtype": "generator.precision",
    "target_colour": "generator.target",
    "read_image": "generator.io",
    "read_mask": "generator.io",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
