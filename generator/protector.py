"""Single-pass protection: load a trained noise U-Net and protect images with it.

    from generator import Protector
    protector = Protector.from_checkpoint("generator-lama-tiny")
    protected = protector.protect(image, mask)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from generator import checkpoint
from generator.target import target_colour
from generator.unet import NoiseUNet, UNetConfig

Tensor = torch.Tensor
KIND = "generator"
DEFAULT = "generator-lama-tiny"


def save_generator(net: NoiseUNet, path: str | os.PathLike, **notes: str) -> Path:
    """Write a noise U-Net's weights and architecture as a PaintGuard safetensors checkpoint."""
    return checkpoint.save(net.state_dict(), path, KIND, net.config.to_dict(), **notes)


def load_generator(name_or_path: str | os.PathLike = DEFAULT) -> NoiseUNet:
    """Build a noise U-Net from a shipped name or a checkpoint path, key-for-key."""
    path = checkpoint.resolve(name_or_path, KIND)
    state, meta = checkpoint.load(path, KIND)
    try:
        net = NoiseUNet(UNetConfig(**meta["config"]))
    except TypeError as err:
        raise checkpoint.CheckpointError(f"'{path}' holds an unknown generator architecture: {err}") from None
    checkpoint.load_state_strict(net, state, str(path))
    return net.eval().requires_grad_(False)


class Protector:
    """Protects the masked region of images with one forward pass of a trained generator."""

    def __init__(self, net: NoiseUNet, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.net = net.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = torch.device(device), dtype

    @classmethod
    def from_checkpoint(cls, name_or_path: str | os.PathLike = DEFAULT, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> "Protector":
        """Load a shipped generator by name (e.g. ``"generator-lama-tiny"``) or from a file."""
        return cls(load_generator(name_or_path), device, dtype)

    @property
    def eps(self) -> float:
        return self.net.config.eps

    @torch.inference_mode()
    def noise(self, image: Tensor, mask: Tensor, target: Tensor | None = None) -> Tensor:
        """The bounded noise for image (B,3,H,W) in [0,1] and mask (B,1,H,W); target colours default to the paper's."""
        image = image.to(self.device, self.dtype)
        mask = (mask.to(self.device) > 0).to(self.dtype)
        target = target_colour(image) if target is None else target.to(self.device, self.dtype)
        return self.net(image, mask, target)

    @torch.inference_mode()
    def protect(self, image: Tensor, mask: Tensor) -> Tensor:
        """Protected images (B,3,H,W) in [0,1]: ``clip(image + noise, 0, 1)``, one forward pass."""
        if image.dim() != 4 or image.shape[1] != 3 or mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(f"expected image (B,3,H,W) and mask (B,1,H,W), got {tuple(image.shape)} and "
                             f"{tuple(mask.shape)}")
        if image.shape[-2:] != mask.shape[-2:] or image.shape[0] != mask.shape[0]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match image {tuple(image.shape)}")
        image = image.to(self.device, self.dtype)
        return (image + self.noise(image, mask)).clamp(0, 1)
