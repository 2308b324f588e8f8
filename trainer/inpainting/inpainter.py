"""The frozen inpainter that protection attacks: LaMa's inference, exactly.

``load_inpainter(source)`` accepts a shipped name (``"lama-tiny"``), a PaintGuard
safetensors checkpoint, or a LaMa model directory as LaMa distributes it
(``config.yaml`` + ``models/best.ckpt``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from generator import checkpoint
from generator.checkpoint import CheckpointError
from generator.devices import check_device
from generator.messages import one_line
from generator.real_fft import exporting
from trainer.inpainting.ffc import FFCResNetConfig, FFCResNetGenerator, FFCResnetBlock

Tensor = torch.Tensor
KIND = "inpainter"


def pad_symmetric(x: Tensor, multiple: int) -> Tensor:
    """Pad H and W at the bottom/right up to a multiple, like numpy's ``mode='symmetric'`` (edge repeated)."""
    for dim in (-2, -1):
        n = x.shape[dim]
        extra = -n % multiple
        if extra or exporting():  # an export traces one example: the graph must pad whatever the size
            # symmetric padding walks back and forth over the edge rows: n-1, n-2, ..., 0, 0, 1, ...
            j = torch.arange(extra, device=x.device)
            turn = j // n
            offset = j - turn * n  # not j % n: the torch.export-based ONNX exporter has no remainder by a symbolic size
            idx = torch.where(turn % 2 == 0, n - 1 - offset, offset)
            x = torch.cat([x, x.index_select(dim, idx)], dim=dim)
    return x


def lama_predict(net: FFCResNetGenerator, image: Tensor, mask: Tensor) -> Tensor:
    """LaMa's raw prediction for the whole image: input ``cat([x * (1 - m), m])`` with ``m = mask > 0``,
    padded to the network's multiple and cropped back (used frozen here and in inpainter training)."""
    h, w = image.shape[-2:]
    mask = (mask > 0).to(image.dtype)
    x = pad_symmetric(torch.cat([image * (1 - mask), mask], dim=1), net.size_multiple)
    # channels-last lets oneDNN's CPU convolutions skip their layout copies (with the net's weights in it too,
    # see Inpainter and InpainterModule): lama-tiny's 256 px forward 0.085 -> 0.069 s on two cores
    return net(x.contiguous(memory_format=torch.channels_last))[..., :h, :w]


class Inpainter(nn.Module):
    """A frozen FFC-ResNet used as LaMa does at inference, differentiable w.r.t. the image.

    ``forward(image, mask)``: image (B,3,H,W) in [0,1], mask (B,1,H,W), any H and W;
    returns ``mask * prediction + (1 - mask) * image`` with the mask binarised by ``> 0``.
    """

    def __init__(self, net: FFCResNetGenerator) -> None:
        super().__init__()
        # channels-last weights, as lama_predict's input (the state dict's values are unchanged)
        self.net = net.to(memory_format=torch.channels_last)
        self.net.requires_grad_(False)
        self.train(False)

    @property
    def config(self) -> FFCResNetConfig:
        return self.net.config

    def train(self, mode: bool = True) -> "Inpainter":
        # BatchNorm must keep its running statistics: the inpainter is never in training mode
        return super().train(False)

    def fingerprint(self) -> str:
        """A short SHA-256 of the weights: tells two inpainters of the same name apart."""
        return checkpoint.weights_fingerprint(self.net)

    def encoder_layers(self, k: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Layers 1..k (the stem, then the stride-2 downsampling layers) as (weight, BatchNorm scale, shift),
        a layer's global branch stacked after its local one along the output channels."""
        layers = []
        for i in range(1, k + 1):
            ffc_bn_act = self.net.model[i]
            ffc = ffc_bn_act.ffc
            if not isinstance(ffc.convg2l, nn.Identity) or not isinstance(ffc.convg2g, nn.Identity):
                raise ValueError(f"layer {i} of this inpainter reads a global input; an encoder-gradient head "
                                 "carries local-input layers only")
            parts = [(ffc.convl2l, ffc_bn_act.bn_l), (ffc.convl2g, ffc_bn_act.bn_g)]
            parts = [(conv, bn) for conv, bn in parts if isinstance(conv, nn.Conv2d)]
            scales = [bn.weight / torch.sqrt(bn.running_var + bn.eps) for _, bn in parts]
            layers.append((torch.cat([conv.weight for conv, _ in parts]), torch.cat(scales),
                           torch.cat([bn.bias - bn.running_mean * s for (_, bn), s in zip(parts, scales)])))
        return layers

    def bottleneck_blocks(self, k: int) -> dict[str, Tensor]:
        """The state of the first ``k`` residual blocks of the bottleneck (keys as in an ``nn.Sequential`` of them)."""
        blocks = [m for m in self.net.model if isinstance(m, FFCResnetBlock)]
        if k > len(blocks):
            raise ValueError(f"this inpainter has {len(blocks)} bottleneck blocks, not {k}")
        return nn.Sequential(*blocks[:k]).state_dict()

    def predict(self, image: Tensor, mask: Tensor) -> Tensor:
        """The network's raw prediction for the whole image (before compositing)."""
        return lama_predict(self.net, image, mask)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != 3 or mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(f"expected image (B,3,H,W) and mask (B,1,H,W), got {tuple(image.shape)} and {tuple(mask.shape)}")
        if image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"mask is {tuple(mask.shape[-2:])} but the image is {tuple(image.shape[-2:])}")
        multiple = self.net.size_multiple
        if not exporting() and min(image.shape[-2:]) <= multiple:  # its bottleneck would be 1 px, too few to pad
            raise ValueError(f"the inpainter takes images larger than {multiple} px on each side, got "
                             f"{image.shape[-1]}x{image.shape[-2]}")
        hole = (mask > 0).to(image.dtype)
        return hole * self.predict(image, hole) + (1 - hole) * image


# --- PaintGuard checkpoints ---------------------------------------------------------------

def save_inpainter(net: FFCResNetGenerator | Inpainter, path: str | os.PathLike, **notes: str) -> Path:
    """Write an FFC-ResNet's weights and architecture as a PaintGuard safetensors checkpoint."""
    net = net.net if isinstance(net, Inpainter) else net
    return checkpoint.save(net.state_dict(), path, KIND, {"architecture": "ffc_resnet", **net.config.to_dict()},
                           **notes)


def _from_paintguard(path: Path) -> FFCResNetGenerator:
    state, meta = checkpoint.load(path, KIND)
    config = dict(meta["config"])
    if config.pop("architecture", None) != "ffc_resnet":
        raise CheckpointError(f"'{path}' holds an unknown inpainter architecture")
    net = FFCResNetGenerator(FFCResNetConfig(**config))
    checkpoint.load_state_strict(net, state, str(path))
    return net


# --- LaMa model directories ---------------------------------------------------------------

class _Opaque:
    """Stands in for non-tensor classes pickled in LaMa checkpoints; their code is never imported or run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


# Lightning 1.x stores callback states keyed by the callback *class*, and LaMa's
# config may be pickled as OmegaConf containers. Only these names are accepted,
# and each is replaced by an inert placeholder; anything else refuses to load.
LAMA_CHECKPOINT_GLOBALS = [
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    # what a pickled DictConfig's metadata names: its key, element and object types and its resolver cache
    "typing.Any",
    "builtins.dict",
    "builtins.list",
    "builtins.int",
    "collections.defaultdict",
]


def _read_lama_state(ckpt: Path) -> dict[str, Tensor]:
    blob = checkpoint.torch_load(ckpt, "LaMa checkpoint", [(_Opaque, name) for name in LAMA_CHECKPOINT_GLOBALS])
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"'{ckpt}' holds no state_dict")
    # discriminator, loss and evaluator weights are training-only and skipped
    gen = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
    if not gen:
        raise CheckpointError(f"'{ckpt}' has no 'generator.' weights")
    return gen


def read_lama_config(config_path: Path) -> FFCResNetConfig:
    """The architecture from the ``generator:`` block of a LaMa config.yaml, interpolations resolved."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.load(config_path)
        # resolve only the generator block: the rest refers to the authors' machines and env vars
        block = OmegaConf.to_container(cfg.generator, resolve=True)
    except yaml.YAMLError as err:
        # PyYAML's message spans lines, with a caret under the bad column: its first line and the position suffice
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or one_line(err, 200)
        raise CheckpointError(f"'{config_path}' is not valid YAML: {problem}{where}") from None
    except (OmegaConfBaseException, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read the generator block of '{config_path}': {str(err).splitlines()[0]}") from None
    try:
        return FFCResNetConfig.from_lama_generator_block(block)
    except (AttributeError, TypeError, ValueError) as err:  # a block or option of the wrong type, or unsupported
        raise CheckpointError(f"bad generator block in '{config_path}': {one_line(err, 300)}") from None


def _from_lama_dir(folder: Path) -> FFCResNetGenerator:
    config_path, ckpt = folder / "config.yaml", folder / "models" / "best.ckpt"
    for needed in (config_path, ckpt):
        if not needed.is_file():
            raise CheckpointError(f"'{folder}' is not a LaMa model directory: missing {needed.relative_to(folder)}")
    net = FFCResNetGenerator(read_lama_config(config_path))
    try:
        checkpoint.load_state_strict(net, _read_lama_state(ckpt), str(ckpt))
    except CheckpointError as err:  # the architecture is the config's: say which file to compare
        if "do not fit" not in str(err):
            raise
        raise CheckpointError(f"{err} (the architecture of {config_path}'s generator block)") from None
    return net


def load_inpainter(source: str | os.PathLike = "lama-tiny", device: str | torch.device = "cpu") -> Inpainter:
    """Load a frozen inpainter from a shipped name, a PaintGuard checkpoint or a LaMa model directory."""
    device = check_device(device)  # before the weights are read: torch's own words for a CPU-only "cuda" say less
    is_dir = isinstance(source, (str, os.PathLike)) and Path(source).is_dir()  # resolve names any other type
    net = _from_lama_dir(Path(source)) if is_dir else _from_paintguard(checkpoint.resolve(source, KIND))
    return Inpainter(net).to(device)


def build_inpainter(config: FFCResNetConfig | dict[str, Any] | None = None, seed: int = 0) -> Inpainter:
    """A frozen inpainter with freshly initialised weights (tests, benchmarks)."""
    if isinstance(config, dict):
        config = FFCResNetConfig(**config)
    torch.manual_seed(seed)
    return Inpainter(FFCResNetGenerator(config))


__all__ = ["Inpainter", "load_inpainter", "save_inpainter", "build_inpainter", "lama_predict", "pad_symmetric", "read_lama_config",
           "LAMA_CHECKPOINT_GLOBALS"]
