"""``paintguard train``: train the one-pass protector against a frozen inpainter (LightningCLI).

    paintguard train fit --config configs/generator/lama-tiny.yaml
    paintguard train fit --config configs/generator/lama-tiny.yaml --ckpt_path last     # resume
    paintguard train validate --config configs/generator/lama-tiny.yaml --ckpt_path CKPT
    paintguard train export --ckpt_path CKPT --out checkpoints/generator-lama-tiny.safetensors

``paintguard train --config FILE`` is short for ``paintguard train fit --config FILE``.
"""

from __future__ import annotations

import sys

from trainer.training.generator_module import GeneratorModule
from trainer.training.lightning_cli import cli_main
from trainer.training.teacher_cache import ProtectionDataModule

PROG = "paintguard train"
# LightningCLI's help lists only its own subcommands; export is dispatched before it (cli_main), so say it here
DESCRIPTION = ("Train the one-pass protector against a frozen inpainter: 'fit' and 'validate' are LightningCLI's "
               "(e.g. fit --config configs/generator/lama-tiny.yaml [--ckpt_path last]); "
               "'export --ckpt_path CKPT --out FILE.safetensors [--overwrite]' writes a checkpoint's generator "
               "as a PaintGuard checkpoint. 'paintguard train --config FILE' is short for 'fit --config FILE'.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] not in (["fit"], ["validate"], ["export"], ["-h"], ["--help"]):
        argv = ["fit", *argv]
    return cli_main(GeneratorModule, ProtectionDataModule, PROG, DESCRIPTION, argv)
