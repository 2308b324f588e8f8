"""PaintGuard's training and evaluation side, as layers that import only downwards.

    inpainting/  the frozen target: LaMa's FFC-ResNet, its exact inference and checkpoint loaders
    objective/   the protection losses, the 20-step optimiser, metrics, transformations and EOT
    data/        photos, crops, masks and splits, and the Lightning data module over them
    evaluation/  scoring methods side by side, attackability probes, compare configs and reports
    training/    the LightningModules (generator, inpainter), teacher caches, CLI and W&B plumbing
    commands/    one thin module per ``paintguard`` subcommand

The public API is ``__all__`` (the names of ``_EXPORTS``, below) and stays stable; it is imported
lazily, so ``import trainer`` (and the ``paintguard`` command) stays fast and Lightning loads
only when needed.

    from trainer import load_inpainter, protect_iterative
    result = protect_iterative(load_inpainter("lama-tiny"), image, mask)
"""

from __future__ import annotations

from generator.lazy import lazy_exports

_EXPORTS = {
    "Inpainter": "trainer.inpainting.inpainter",
    "load_inpainter": "trainer.inpainting.inpainter",
    "save_inpainter": "trainer.inpainting.inpainter",
    "FFCResNetConfig": "trainer.inpainting.ffc",
    "FFCResNetGenerator": "trainer.inpainting.ffc",
    "IterativeConfig": "trainer.objective.iterative",
    "IterativeResult": "trainer.objective.iterative",
    "protect_iterative": "trainer.objective.iterative",
    "LossWeights": "trainer.objective.losses",
    "ProtectionTask": "trainer.objective.losses",
    "prepare_task": "trainer.objective.losses",
    "protection_losses": "trainer.objective.losses",
    "target_colour": "generator.target",
    "protection_metrics": "trainer.objective.metrics",
    "share_of_gain": "trainer.objective.metrics",
    "EOTConfig": "trainer.objective.eot",
    "ImageMaskDataModule": "trainer.data.images",
    "MaskGenerator": "trainer.data.masks",
    "GeneratorModule": "trainer.training.generator_module",
    "InpainterModule": "trainer.training.inpainter_module",
    "ProtectionDataModule": "trainer.training.teacher_cache",
    "build_teacher_cache": "trainer.training.teacher_cache",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
