"""LaMa's discriminator: pix2pixHD's n-layer PatchGAN.

Layer layout and names (``model0`` ... ``model{n_layers+1}``) follow
``saicinpainting/training/modules/pix2pixhd.py``, so a LaMa discriminator state
dict would load key-for-key. Every block's output is kept for feature matching.
"""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 4x4 convolutions, one stride-1, then a 1-channel logit map.

    ``forward(x)`` returns ``(logits, features)``: logits (B,1,h,w), one per
    overlapping patch, and the list of the ``n_layers + 1`` intermediate
    activations (the inputs of the final convolution included).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, max_features: int = 512) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.n_layers = n_layers
        kernel, pad = 4, 2  # pad = ceil((4 - 1) / 2), as pix2pixHD

        def block(cin: int, cout: int, stride: int, norm: bool) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, pad)]
            if norm:
                layers.append(nn.BatchNorm2d(cout))
            # not in place: the activations are returned for feature matching and reused by R1's double backward
            layers.append(nn.LeakyReLU(0.2))
            return nn.Sequential(*layers)

        blocks = [block(input_nc, ndf, 2, norm=False)]
        nf = ndf
        for _ in range(1, n_layers):
            blocks.append(block(nf, min(nf * 2, max_features), 2, norm=True))
            nf = min(nf * 2, max_features)
        blocks.append(block(nf, min(nf * 2, max_features), 1, norm=True))
        nf = min(nf * 2, max_features)
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, kernel, 1, pad)))
        for i, b in enumerate(blocks):
            self.add_module(f"model{i}", b)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for i in range(self.n_layers + 2):
            x = getattr(self, f"model{i}")(x)
            features.append(x)
        return features[-1], features[:-1]
