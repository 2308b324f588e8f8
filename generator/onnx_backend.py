"""The onnxruntime backend: the exported noise U-Net, called exactly like ``NoiseUNet``.

    protector = Protector.from_checkpoint("generator-lama-tiny", backend="onnx")

Only the network changes: ``Protector`` keeps reading, the target colour,
clipping, 8-bit rounding within the bound and writing. The model is either an
exported file (checked against its checkpoint's fingerprint, so a stale export
is refused) or, when none is given, exported in memory from the checkpoint at
load time (about a second), which cannot be stale.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from generator import checkpoint
from generator.messages import one_line
from generator.onnx_meta import INPUTS, OUTPUT, OnnxModelError, check_fresh, check_metadata
from generator.protector import DEFAULT, KIND
from generator.resources import extra_hint
from generator.unet import UNetConfig

Tensor = torch.Tensor
# onnxruntime's graph optimisation levels, by the names the benchmark and the API use
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


class MissingExtraError(RuntimeError):
    """An optional package of the ``onnx`` extra is not installed."""


def require(package: str) -> ModuleType:
    """Import an optional package of the ``onnx`` extra, or fail with one line that says how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingExtraError(f"ONNX export and the ONNX backend need the '{package}' package: "
                                f"{extra_hint('onnx')}") from None


def inference_session(model: bytes, threads: int | None = None, level: str = "all", spin: bool = False):
    """An onnxruntime CPU session for the ONNX bytes ``model``, with the options ``OnnxGenerator`` documents;
    onnxruntime's own errors go to the caller."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    options.log_severity_level = 3  # errors only: its warnings are about its own internals
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    # a memory pattern pre-plans one block per input shape: at 3840x2160 it took the peak from 1.0 to 1.7 GB
    # for no speed (benchmarks/onnx_speed.py); every image size is new here, so there is nothing to reuse
    options.enable_mem_pattern = False
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxGenerator:
    """A PaintGuard ONNX export run by onnxruntime on the CPU: ``(image, mask, target) -> noise`` tensors.

    ``model``: a file path or the model's bytes. ``threads``: onnxruntime's intra-op
    threads (None: its default, one per physical core). ``level``: graph optimisation
    (``LEVELS``). ``spin``: let idle threads spin between operators (onnxruntime's
    default); off here, as OMP_WAIT_POLICY=PASSIVE is for torch, because spinning
    threads starve every other process on a small shared CPU.
    ``config`` is the architecture recorded at export.
    """

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None, level: str = "all",
                 spin: bool = False) -> None:
        require("onnxruntime")  # first, said as a missing extra, not as a model that does not load
        where = "<in-memory export>" if isinstance(model, bytes) else str(model)
        if level not in LEVELS:
            raise ValueError(f"unknown optimisation level {level!r}; choose from {', '.join(LEVELS)}")
        if not isinstance(model, bytes):
            if not Path(model).is_file():
                raise OnnxModelError(f"cannot read ONNX model '{model}': No such file")
            model = Path(model).read_bytes()
        try:
            self.session = inference_session(model, threads, level, spin)
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise OnnxModelError(f"cannot load ONNX model '{where}': {one_line(err, 300)}") from None
        self.where = where
        self.metadata: dict[str, Any] = check_metadata(self.session.get_modelmeta().custom_metadata_map, where)
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUTS or [o.name for o in self.session.get_outputs()] != [OUTPUT]:
            raise OnnxModelError(f"'{where}' has inputs {names}, expected {INPUTS}")
        self.config = UNetConfig(**self.metadata["config"])

    @property
    def size_multiple(self) -> int:
        return 2 ** len(self.config.widths)

    def __call__(self, image: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """The noise for image (B,3,H,W), mask (B,1,H,W) and target (B,3), on the image's device and dtype."""
        feeds = {"image": image, "mask": mask, "target": target.reshape(-1, 3)}
        arrays = {k: np.ascontiguousarray(v.detach().to("cpu", torch.float32).numpy()) for k, v in feeds.items()}
        noise = self.session.run([OUTPUT], arrays)[0]
        return torch.from_numpy(noise).to(image.device, image.dtype)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "OnnxGenerator":
        """Like ``nn.Module.to`` for ``Protector``: the CPU only (inputs and outputs convert any dtype)."""
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"the onnx backend runs on the CPU (onnxruntime), not on '{device}'; "
                             "use --device cpu, or --backend torch for a GPU")
        return self

    def eval(self) -> "OnnxGenerator":
        return self


def load_onnx_generator(name_or_path: str | os.PathLike = DEFAULT, onnx_model: str | os.PathLike | None = None,
                        threads: int | None = None, level: str = "all") -> OnnxGenerator:
    """The onnxruntime generator for a checkpoint (shipped name or .safetensors) or an exported .onnx file.

    A .safetensors checkpoint with ``onnx_model``: that export, refused if its fingerprint
    does not match the checkpoint. Without ``onnx_model``: exported in memory now.
    An .onnx file alone: used as it is, after the same check against the shipped
    checkpoint it names, when there is one.
    """
    require("onnxruntime")
    if str(name_or_path).lower().endswith(".onnx"):
        if onnx_model is not None:
            raise ValueError("give either an .onnx checkpoint or onnx_model (--onnx-model), not both")
        runner = OnnxGenerator(name_or_path, threads, level)
        check_fresh(runner.metadata, str(name_or_path))
        return runner
    source = checkpoint.resolve(name_or_path, KIND)
    checkpoint.load(source, KIND)  # a checkpoint of the wrong kind fails here, with the torch backend's message
    if onnx_model is None:
        from generator.onnx_export import export_bytes

        model, _ = export_bytes(source, sizes=((1, 19, 21),))  # one small odd size: a quick self-check
        return OnnxGenerator(model, threads, level)
    runner = OnnxGenerator(onnx_model, threads, level)
    check_fresh(runner.metadata, str(onnx_model), source)
    return runner
