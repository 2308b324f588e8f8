"""The inpainter's stem, run backwards: the generator's output stage that borrows the target's first layer.

One FGSM step, ``-eps * sign(g)`` with g the inpainter's input gradient, keeps about 0.8 of the
20-step optimiser's gain, so g is what a one-pass generator has to predict. Through LaMa's first
layer (a k x k convolution W, BatchNorm, ReLU, on ``cat(x * (1 - m), m)``) that gradient is exactly

    g = W^T * (relu'(z) * bn_scale * G),   z = BN(W * cat(x * (1 - m), m)),

with G the gradient at the stem's output. The per-pixel detail of g comes from W and from
relu'(z), which a frozen copy of the stem computes exactly from the image; G is the smooth part.
So this head takes a predicted field standing for -G from the U-Net and applies the stem's gate
and transposed convolution. One field serves both edits of the objective (the attack on m and
the incp term on E(m), whose stems see slightly different inputs near the mask), gated as the
attack's input: half the cost of two. Measured with the true G (8-bit validation crops, the
optimiser's gain = 1): at full resolution this one-field head keeps 0.80, as much as two exact
stems (0.81, FGSM), when the field leaves out the incp term's part inside the ring E(m) - m (the incp edit
never sees those pixels); with that part in, 0.74. The head's field is per pixel (a pixel shuffle), so the
generator is free to learn that field: predicting it, not the head, is what limits a generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from generator.transpose import exporting, transpose_full

Tensor = torch.Tensor
CHANNELS_LAST = torch.channels_last


class StemGradientHead(nn.Module):
    """``forward(field, image, mask) -> raw``: the stem's transpose applied to a (B, C, H, W) field.

    Holds a frozen copy of the stem (buffers, saved with the generator): call :meth:`copy_layers`
    with the target inpainter's layers before training; a loaded generator brings its own.
    """

    def __init__(self, channels: int = 32, kernel: int = 7, in_channels: int = 4) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"the stem's kernel must be odd, got {kernel}")
        self.register_buffer("weight", torch.zeros(channels, in_channels, kernel, kernel))
        self.register_buffer("scale", torch.zeros(channels))
        self.register_buffer("shift", torch.zeros(channels))

    @torch.no_grad()
    def copy_layers(self, layers: list[tuple[Tensor, Tensor, Tensor]]) -> None:
        """Take the stem from the inpainter's layers (``Inpainter.encoder_layers(k)``, any k: the first one), its
        convolution's weight and its BatchNorm as scale and shift."""
        weight, scale, shift = layers[0]
        if weight.shape != self.weight.shape:
            raise ValueError(f"the inpainter's first layer has shape {tuple(weight.shape)}, the stem-gradient "
                             f"head {tuple(self.weight.shape)}: set stem_channels and stem_kernel to match it")
        self.weight.copy_(weight)
        self.scale.copy_(scale)
        self.shift.copy_(shift)

    def forward(self, field: Tensor, image: Tensor, mask: Tensor, z: Tensor | None = None) -> Tensor:
        """``z``: the stem's pre-activation on this image and mask (:meth:`preactivation`), if already made."""
        pad = self.weight.shape[-1] // 2
        x, weight, known = self._stem_input(image, mask)
        back = self._band(field, x, weight, z)[..., pad:-pad, pad:-pad]
        # the field stands for -G, so this is -g's estimate: a positive value raises the pixel
        return back * known

    def banded(self, field_rows: Callable[[int, int], Tensor], image: Tensor, mask: Tensor, rows: int) -> Tensor:
        """``forward`` over bands of ``rows`` image rows, ``field_rows(a, b)`` making the field's rows a..b-1.

        The same numbers as one pass (each band also gates the kernel radius of rows on either side of it, which
        the transpose reaches back from), but the 32-channel full-resolution tensors exist one band at a time:
        a 3840x2160 pass holds tens of megabytes of them instead of gigabytes.
        """
        pad = self.weight.shape[-1] // 2
        x, weight, known = self._stem_input(image, mask)
        h = image.shape[-2]
        bands = []
        for top in range(0, h, rows):
            bottom = min(h, top + rows)
            # the gated rows that reach this band through the transpose, and the padded input rows under them
            first, last = max(0, top - pad), min(h, bottom + pad)
            band = self._band(field_rows(first, last), x[..., first:last + 2 * pad, :], weight)
            bands.append(band[..., top - first + pad:bottom - first + pad, pad:-pad])
        return torch.cat(bands, dim=-2) * known

    def preactivation(self, image: Tensor, mask: Tensor) -> Tensor:
        """The stem's output before its ReLU, z = BN(W * cat(x * (1 - m), m)), at full resolution."""
        x, weight, _ = self._stem_input(image, mask)
        return F.conv2d(x, weight, self.shift)

    def _stem_input(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The stem's padded input, its weights with BatchNorm's scale folded in, and 1 outside the hole."""
        pad = self.weight.shape[-1] // 2
        mask = (mask > 0).to(image.dtype)
        known = 1 - mask
        x = F.pad(torch.cat([image * known, mask], dim=1), (pad, pad, pad, pad), mode="reflect")
        # the gate's test and the transpose both take W * scale, so the only full-resolution elementwise pass
        # over the field is the gate itself (a third of the cost)
        weight = self.weight * self.scale[:, None, None, None]
        # channels last: the CPU's convolutions then skip the layout copies of a 32-channel full-resolution
        # tensor, a third of the head's time (the field arrives in this layout too, see NoiseUNet.raw)
        return x.contiguous(memory_format=CHANNELS_LAST), weight.contiguous(memory_format=CHANNELS_LAST), known

    def _band(self, field: Tensor, x: Tensor, weight: Tensor, z: Tensor | None = None) -> Tensor:
        """The stem's transpose on ``field`` gated by the stem's ReLU on ``x`` (padded by the kernel radius)."""
        if z is None:
            z = F.conv2d(x, weight, self.shift)
        # relu'(z): which of the stem's units pass a gradient at each pixel
        if exporting():
            gated = torch.where(z > 0, field, torch.zeros((), dtype=field.dtype, device=field.device))
        else:  # the same product, fused: a where over a bool mask of this size is 5x slower on a CPU
            gated = torch.ops.aten.threshold_backward(field, z, 0.0)
        # only the image channels are wanted back; the caller's crop leaves out the fold back of the stem's
        # reflect padding, which only touches the pixels 1 to pad rows and columns in from the edge (on a CPU
        # the transpose is faster than the equivalent convolution with the kernel flipped, 3 outputs being few)
        return transpose_full(gated, weight[:, :3])
