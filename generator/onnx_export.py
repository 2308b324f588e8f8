"""Export the noise U-Net to ONNX (dynamic batch, height and width) and check the export against PyTorch.

    from generator.onnx_export import export_onnx
    export_onnx("generator-lama-tiny", "generator-lama-tiny.onnx")

The exported graph takes ``image`` (B,3,H,W) in [0,1], ``mask`` (B,1,H,W) and
``target`` (B,3) and returns ``noise`` (B,3,H,W), exactly ``NoiseUNet.forward``
(padding to a multiple of ``2**len(widths)`` included). Every export is checked
at once: onnxruntime must agree with PyTorch within ``TOLERANCE`` on a few random
sizes, odd and non-square ones among them, or the export fails.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from generator import checkpoint
from generator.messages import one_line
from generator.onnx_meta import INPUTS, OUTPUT, metadata_for
from generator.protector import DEFAULT, KIND, load_generator
from generator.save import atomic_write
from generator.unet import NoiseUNet

Tensor = torch.Tensor
EXPORTERS = ("torchscript", "dynamo")
OPSET = 17  # GroupNorm becomes InstanceNormalization: an op every onnxruntime build, the web's included, has
TOLERANCE = 1e-4
# (batch, height, width): odd sides, a non-square image, one already a multiple of 16, a batch of two
CHECK_SIZES = ((1, 37, 53), (2, 48, 80), (1, 101, 67))
EXAMPLE = (1, 35, 51)  # odd, so the traced graph is the padding one (it is taken for every size anyway)


class ExportError(RuntimeError):
    """An export that failed, or whose result disagrees with PyTorch."""


class PaddedUNet(nn.Module):
    """``NoiseUNet.forward`` with the padding always applied (a zero pad is a no-op).

    The plain forward skips ``F.pad`` when no padding is needed; a trace of that
    Python branch would bake the example's case into the graph for every size.
    """

    def __init__(self, net: NoiseUNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        m = self.net.size_multiple
        pad = (0, (-w) % m, 0, (-h) % m)
        padded = F.pad(mask, pad, mode="replicate")
        raw = self.net.raw(F.pad(image, pad, mode="replicate"), padded, target)[..., :h, :w]
        return self.net.bounded(raw, mask)


def random_inputs(batch: int, h: int, w: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """An image, a blob mask and pure target colours, as ``Protector`` passes them."""
    image = torch.rand(batch, 3, h, w, generator=generator)
    mask = (torch.rand(batch, 1, h, w, generator=generator) > 0.7).float()
    colours = torch.eye(3)[[1, 0, 2]]  # green, red, blue
    target = colours[torch.randint(0, 3, (batch,), generator=generator)]
    return image, mask, target


def _graph(net: NoiseUNet, exporter: str) -> bytes:
    """The ONNX bytes of ``net``; both exporters give the same graph, checked the same way."""
    module = PaddedUNet(net).eval()
    example = random_inputs(*EXAMPLE, torch.Generator().manual_seed(0))
    names = dict(input_names=list(INPUTS), output_names=[OUTPUT])
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter is deprecated and warns about its own trace; the check below is what counts
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            # takes 1 s here, against 19 s for the torch.export one (the same agreement; its graph is opset 20)
            axes = {"batch": 0, "height": 2, "width": 3}
            dynamic = {name: {i: a for a, i in axes.items()} for name in ("image", "mask", OUTPUT)}
            dynamic["target"] = {0: "batch"}
            buffer = io.BytesIO()
            torch.onnx.export(module, example, buffer, opset_version=OPSET, dynamic_axes=dynamic,
                              do_constant_folding=True, dynamo=False, **names)
            return buffer.getvalue()
        dim = torch.export.Dim.DYNAMIC
        shapes = {"image": {0: dim, 2: dim, 3: dim}, "mask": {0: dim, 2: dim, 3: dim}, "target": {0: dim}}
        # its registry logs that torchvision's operators are skipped: this project has no torchvision, and no use
        registry = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registry.level
        registry.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(module, example, dynamo=True, dynamic_shapes=shapes, verbose=False, **names)
        finally:
            registry.setLevel(level)
        return program.model_proto.SerializeToString()


def _with_metadata(model: bytes, metadata: dict[str, str]) -> bytes:
    """``model`` with PaintGuard's metadata properties set, checked by ONNX's own checker."""
    import onnx

    proto = onnx.load_from_string(model)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "paintguard"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def self_check(net: NoiseUNet, model: bytes, sizes=CHECK_SIZES, tolerance: float = TOLERANCE) -> float:
    """Largest |onnxruntime - PyTorch| over random inputs of ``sizes``; raises ExportError above ``tolerance``."""
    from generator.onnx_backend import OnnxGenerator

    runner = OnnxGenerator(model, threads=1)
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch, h, w in sizes:
        image, mask, target = random_inputs(batch, h, w, generator)
        with torch.no_grad():
            expected = net(image, mask, target)
        try:
            got = runner(image, mask, target)
        except Exception as err:  # onnxruntime's own failures are multi-line C++ messages
            raise ExportError(f"self-check failed: onnxruntime cannot run the export on a {h}x{w} batch of "
                              f"{batch}: {one_line(err, 300)}") from None
        if got.shape != expected.shape:
            raise ExportError(f"self-check failed: onnxruntime gives shape {tuple(got.shape)} for a {h}x{w} "
                              f"batch of {batch}, PyTorch {tuple(expected.shape)}")
        diff = float((got - expected).abs().max())
        if not diff <= tolerance:  # `not <=` also catches NaN
            raise ExportError(f"self-check failed: onnxruntime differs from PyTorch by {diff:.3g} on a {h}x{w} "
                              f"batch of {batch} (tolerance {tolerance:g})")
        worst = max(worst, diff)
    return worst


def export_bytes(name_or_path: str | os.PathLike = DEFAULT, exporter: str = "torchscript",
                 sizes=CHECK_SIZES) -> tuple[bytes, float]:
    """(ONNX bytes with metadata, worst self-check difference) for a generator checkpoint (name or file)."""
    from generator.onnx_backend import require

    require("onnx")
    require("onnxruntime")
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    source = checkpoint.resolve(name_or_path, KIND)
    net = load_generator(source)
    try:
        model = _with_metadata(_graph(net, exporter), metadata_for(source, net.config.to_dict(), exporter))
    except Exception as err:  # the exporters and ONNX's checker raise many kinds; one line says which step failed
        raise ExportError(f"cannot export '{source}' with the {exporter} exporter: {one_line(err, 300)}") from None
    return model, self_check(net, model, sizes)


def export_onnx(name_or_path: str | os.PathLike = DEFAULT, output: str | os.PathLike = "generator.onnx",
                exporter: str = "torchscript", sizes=CHECK_SIZES, overwrite: bool = False) -> tuple[Path, float]:
    """Export and self-check a generator, then write the ONNX file atomically; returns (path, worst difference).

    An existing ``output`` is replaced only with ``overwrite=True``.
    """
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"output '{output}' should end in .onnx")
    if not output.parent.is_dir():
        raise ValueError(f"output folder '{output.parent}' does not exist")
    # checked before the export (seconds); the write is atomic, so a refused or failed run keeps the old file
    if output.exists() and not overwrite:
        raise ValueError(f"output '{output}' exists; pass --overwrite to replace it")
    model, worst = export_bytes(name_or_path, exporter, sizes)
    return atomic_write(output, lambda tmp: tmp.write_bytes(model)), worst
