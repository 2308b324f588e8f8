"""Export the noise U-Net, or an inpainter, to ONNX (dynamic batch, height and width) and check it against PyTorch.

    from generator.onnx_export import export_onnx
    export_onnx("generator-lama-tiny", "generator-lama-tiny.onnx")
    export_onnx("lama-tiny", "lama-tiny.onnx")      # the web page's editor view

A generator's graph takes ``image`` (B,3,H,W) in [0,1], ``mask`` (B,1,H,W) and
``target`` (B,3) and returns ``noise`` (B,3,H,W), exactly ``NoiseUNet.forward``
(padding to a multiple of ``2**len(widths)`` included). An inpainter's takes
``image`` and ``mask`` and returns ``edited``, exactly ``Inpainter.forward``.
Every export is checked at once: onnxruntime must agree with PyTorch within
``TOLERANCE`` on a few random sizes, odd and non-square ones among them, or the
export fails.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from generator import checkpoint
from generator.messages import one_line
from generator.onnx_backend import inference_session, require
from generator.onnx_meta import INPAINTER_INPUTS, INPAINTER_KIND, INPAINTER_OUTPUT, INPUTS, OUTPUT, metadata_for
from generator.protector import DEFAULT, KIND, load_generator
from generator.save import atomic_write, check_creatable
from generator.unet import NoiseUNet

Tensor = torch.Tensor
INPAINTER = "inpainter"  # the checkpoint kind (trainer.inpainting.inpainter.KIND)
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


def _graph(module: nn.Module, example: tuple[Tensor, ...], inputs: tuple[str, ...], output: str,
           exporter: str) -> bytes:
    """The ONNX bytes of ``module`` with a dynamic batch, height and width (the batch alone for 2-D inputs); both
    exporters give the same graph, checked the same way."""
    module = module.eval()
    names = dict(input_names=list(inputs), output_names=[output])
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter is deprecated and warns about its own trace; the check below is what counts
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            # takes 1 s here, against 19 s for the torch.export one (the same agreement; its graph is opset 20)
            image_axes = {0: "batch", 2: "height", 3: "width"}
            dynamic = {name: image_axes if x.dim() == 4 else {0: "batch"} for name, x in zip(inputs, example)}
            dynamic[output] = image_axes
            buffer = io.BytesIO()
            torch.onnx.export(module, example, buffer, opset_version=OPSET, dynamic_axes=dynamic,
                              do_constant_folding=True, dynamo=False, **names)
            return buffer.getvalue()
        dim = torch.export.Dim.DYNAMIC
        shapes = {name: {0: dim, 2: dim, 3: dim} if x.dim() == 4 else {0: dim} for name, x in zip(inputs, example)}
        # its registry logs that torchvision's operators are skipped: this project has no torchvision, and no use
        registry = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registry.level
        registry.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(module, example, dynamo=True, dynamic_shapes=shapes, verbose=False, **names)
        finally:
            registry.setLevel(level)
        return program.model_proto.SerializeToString()


def generator_graph(net: NoiseUNet, exporter: str) -> bytes:
    """The ONNX bytes of a generator: (image, mask, target) -> noise."""
    example = random_inputs(*EXAMPLE, torch.Generator().manual_seed(0))
    return _graph(PaddedUNet(net), example, INPUTS, OUTPUT, exporter)


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


def self_check(network: nn.Module, model: bytes, sizes=CHECK_SIZES, tolerance: float = TOLERANCE,
               inputs: Callable[..., tuple[Tensor, ...]] = random_inputs) -> float:
    """Largest |onnxruntime - PyTorch| over ``inputs(batch, h, w, generator)`` of ``sizes``; raises ExportError
    above ``tolerance``."""
    require("onnxruntime")  # outside the try: a missing extra is said as one
    try:
        session = inference_session(model, threads=1)
    except Exception as err:  # onnxruntime's own failures are multi-line C++ messages
        raise ExportError(f"self-check failed: onnxruntime cannot load the export: {one_line(err, 300)}") from None
    names = [i.name for i in session.get_inputs()]
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch, h, w in sizes:
        feeds = inputs(batch, h, w, generator)
        with torch.no_grad():
            expected = network(*feeds)
        try:
            got = torch.from_numpy(session.run(None, {n: x.numpy() for n, x in zip(names, feeds)})[0])
        except Exception as err:
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


def inpainter_inputs(batch: int, h: int, w: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """An image and a blob mask, as an editor gives an inpainter."""
    return random_inputs(batch, h, w, generator)[:2]


def _resolve(name_or_path: str | os.PathLike) -> tuple[Path, str]:
    """The checkpoint file a generator's or an inpainter's name or path gives, and its kind."""
    try:
        source = checkpoint.resolve(name_or_path, KIND)
    except checkpoint.CheckpointError:
        shipped = {kind: ", ".join(checkpoint.available(kind)) or "none" for kind in (KIND, INPAINTER)}
        raise checkpoint.CheckpointError(
            f"no checkpoint {str(name_or_path)!r}: not a file, and not the name of a shipped generator "
            f"({shipped[KIND]}) or inpainter ({shipped[INPAINTER]})") from None
    return source, checkpoint.read_metadata(source, KIND).get("kind", "")


def export_bytes(name_or_path: str | os.PathLike = DEFAULT, exporter: str = "torchscript",
                 sizes=CHECK_SIZES) -> tuple[bytes, float]:
    """(ONNX bytes with metadata, worst self-check difference) for a generator's or an inpainter's checkpoint
    (name or file).

    A generator exports as (image, mask, target) -> noise; an inpainter, for the web page's editor view, as
    (image, mask) -> edited, LaMa's inference (``Inpainter.forward``).
    """
    require("onnx")
    require("onnxruntime")
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    source, kind = _resolve(name_or_path)
    if kind == INPAINTER:
        from trainer.inpainting.inpainter import load_inpainter  # lazy: generator stays importable without trainer

        network, inputs = load_inpainter(source), inpainter_inputs
        example = inputs(*EXAMPLE, torch.Generator().manual_seed(0))
        build = lambda: _graph(network, example, INPAINTER_INPUTS, INPAINTER_OUTPUT, exporter)  # noqa: E731
        metadata = metadata_for(source, network.config.to_dict(), exporter, INPAINTER_KIND)
    else:
        network, inputs = load_generator(source), random_inputs
        build = lambda: generator_graph(network, exporter)  # noqa: E731
        metadata = metadata_for(source, network.config.to_dict(), exporter)
    try:
        model = _with_metadata(build(), metadata)
    except Exception as err:  # the exporters and ONNX's checker raise many kinds; one line says which step failed
        raise ExportError(f"cannot export '{source}' with the {exporter} exporter: {one_line(err, 300)}") from None
    return model, self_check(network, model, sizes, inputs=inputs)


def export_onnx(name_or_path: str | os.PathLike = DEFAULT, output: str | os.PathLike = "generator.onnx",
                exporter: str = "torchscript", sizes=CHECK_SIZES, overwrite: bool = False) -> tuple[Path, float]:
    """Export and self-check a generator or an inpainter, then write the ONNX file atomically; returns (path, worst
    difference).

    An existing ``output`` is replaced only with ``overwrite=True``.
    """
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"output '{output}' should end in .onnx")
    check_creatable(output, "output")
    if not output.parent.is_dir():
        raise ValueError(f"output folder '{output.parent}' does not exist")
    # checked before the export (seconds); the write is atomic, so a refused or failed run keeps the old file
    if output.exists() and not overwrite:
        raise ValueError(f"output '{output}' exists; pass --overwrite to replace it")
    model, worst = export_bytes(name_or_path, exporter, sizes)
    return atomic_write(output, lambda tmp: tmp.write_bytes(model)), worst
