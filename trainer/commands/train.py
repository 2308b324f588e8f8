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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] not in (["fit"], ["validate"], ["export"], ["-h"], ["--help"]):
        argv = ["fit", *argv]
    return cli_main(GeneratorModule, ProtectionDataModule, PROG, __doc__.split("\n\n")[0], argv)
