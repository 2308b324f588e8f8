"""``paintguard fit-inpainter``: train an FFC-ResNet inpainter such as lama-tiny (LightningCLI).

Subcommands::

    paintguard fit-inpainter fit --config configs/inpainter/lama-tiny.yaml
    paintguard fit-inpainter fit --config configs/inpainter/lama-tiny.yaml --ckpt_path last    # resume
    paintguard fit-inpainter validate --config configs/inpainter/lama-tiny.yaml --ckpt_path CKPT
    paintguard fit-inpainter export --ckpt_path CKPT --out checkpoints/lama-tiny.safetensors [--overwrite]

``fit`` and ``validate`` are LightningCLI's (any option can be overridden, e.g.
``--model.adversarial 0 --trainer.max_steps 100``; ``--print_config`` shows
them all). ``--ckpt_path last`` resumes from the ModelCheckpoint's ``last.ckpt``
and is refused, saying so, when there is none yet. ``export`` writes the
generator of a Lightning checkpoint as a PaintGuard inpainter checkpoint that
``load_inpainter`` and every other command accept; the ``ExportInpainter``
callback of the config does the same when training ends.
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from generator.cli_parser import usage_error
from trainer.data.images import ImageMaskDataModule
from trainer.training import lightning_cli
from trainer.training.inpainter_module import InpainterModule

PROG = "paintguard fit-inpainter"
SUBCOMMANDS = ("fit", "validate", "export")
DESCRIPTION = ("Train an FFC-ResNet inpainter such as lama-tiny: 'fit' and 'validate' are LightningCLI's "
               "(e.g. fit --config configs/inpainter/lama-tiny.yaml [--ckpt_path last]); "
               "'export --ckpt_path CKPT --out FILE.safetensors' writes a checkpoint's generator for load_inpainter.")


def make_cli(argv: list[str], run: bool = True) -> LightningCLI:
    """Build (and with ``run``, execute) the CLI; ``run=False`` parses a fit config without a subcommand."""
    return lightning_cli.make_cli(InpainterModule, ImageMaskDataModule, argv, PROG, DESCRIPTION, run=run)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # LightningCLI's own message lists only fit and validate: export is dispatched before it
    if not argv or (not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS):
        got = f", got '{argv[0]}'" if argv else ""
        usage_error(f"expected a subcommand, one of {', '.join(SUBCOMMANDS)}{got}; e.g. "
                    f"'{PROG} fit --config configs/inpainter/lama-tiny.yaml'", PROG)
    return lightning_cli.cli_main(InpainterModule, ImageMaskDataModule, PROG, DESCRIPTION, argv)


if __name__ == "__main__":
    from trainer.commands.cli import run_guarded

    sys.exit(run_guarded(main, sys.argv[1:]))
