"""``paintguard export-onnx``: write a generator, or an inpainter, as an ONNX model (dynamic batch, height and width).

    paintguard export-onnx -o generator-lama-tiny.onnx                  # the default shipped generator
    paintguard export-onnx generator-lama-tiny-robust -o robust.onnx
    paintguard export-onnx runs/my-generator.safetensors -o my.onnx
    paintguard export-onnx -o generator-lama-tiny.onnx --overwrite     # rebuild an existing export
    paintguard export-onnx lama-tiny -o lama-tiny.onnx                 # an inpainter: the web page's editor view

The model's metadata properties hold eps (a generator's), the architecture (JSON)
and the source checkpoint's file name and SHA-256; loaders compare that fingerprint
with the checkpoint and refuse a stale export. Every export is checked on the spot:
onnxruntime must match PyTorch within 1e-4 on random odd and non-square sizes.
Needs the onnx extra: pip install -e ".[onnx]" in the clone.
"""

from __future__ import annotations

import argparse
import time

from generator.cli_parser import ArgumentParser
from generator.onnx_export import CHECK_SIZES, EXPORTERS, TOLERANCE, export_onnx
from generator.protector import DEFAULT


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard export-onnx", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", default=DEFAULT,
                        help=f"a generator or an inpainter: shipped name or .safetensors file (default {DEFAULT})")
    parser.add_argument("-o", "--output", required=True, help="the ONNX file to write (.onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--exporter", choices=EXPORTERS, default="torchscript",
                        help="PyTorch's exporter: torchscript (1 s) or dynamo (torch.export, about 20 s); the same "
                             "network, checked alike")
    return parser


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    args = build_parser().parse_args(argv)
    path, worst = export_onnx(args.checkpoint, args.output, args.exporter, overwrite=args.overwrite)
    sizes = ", ".join(f"{w}x{h}" + (f" (batch {b})" if b > 1 else "") for b, h, w in CHECK_SIZES)
    print(f"paintguard export-onnx: wrote {path} ({path.stat().st_size / 1e6:.1f} MB) from {args.checkpoint}; "
          f"onnxruntime matches PyTorch within {worst:.1g} (tolerance {TOLERANCE:g}) on {sizes}; "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    return 0

