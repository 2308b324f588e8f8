"""The inpainter's encoder, run backwards: the stem-gradient head carried through k of the target's layers.

LaMa has no skip connections: everything its edit depends on flows through the encoder's
downsampling layers (a 7x7 stem, then 3x3 stride-2 convolutions, each with BatchNorm and ReLU) into
the 1/8-resolution bottleneck. So the inpainter's input gradient is exactly

    g = T_1 D_1 T_2 D_2 ... T_k D_k G_k,

with G_k the gradient at layer k's output, D_i the diagonal of layer i's ReLU pattern times its
BatchNorm scale and T_i its transposed convolution. Every D_i and T_i depends on the image alone,
so a frozen copy of the layers computes them exactly; the generator only predicts G_k, at layer k's
resolution (1/8 of the image's for k = 4). Measured with the true G_k on val (benchmarks/stem_bounds.py
--deep-heads 4, share of the 20-step optimiser's gain): at its own resolution it keeps 0.82, as much as
FGSM (0.81), with a better-kept ring edit; known only to 16 x 16 pixel blocks it still keeps 0.75, where
the stem head (k = 1, generator/stem_head.py) fed a field known to 16 x 16 blocks keeps 0.57. As there,
one field serves both edits, gated as the attack's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from generator.stem_head import CHANNELS_LAST, StemGradientHead
from generator.transpose import transpose_stride2

Tensor = torch.Tensor


class Encoding(NamedTuple):
    """The target's layers 1..k on one input: the stem's preactivation (None when banded), the ReLU patterns the
    head gates by (layers 2..k, or 1..k when banded) and layer k's output."""

    z: Tensor | None
    gates: list[Tensor]
    last: Tensor


def lama_encoder_widths(stem_channels: int, layers: int) -> list[int]:
    """Output widths of LaMa's first ``layers`` layers (a global branch's channels counted in): ngf * 2^i."""
    return [stem_channels * 2 ** i for i in range(layers)]


class EncoderGradientHead(nn.Module):
    """``forward(field, image, mask) -> raw``: the transpose of the target's layers 1..k applied to a field
    at layer k's resolution, each gated by its ReLU pattern on the masked image.

    Layer 1 is a :class:`StemGradientHead`; layers 2..k are frozen copies of the stride-2 layers (buffers,
    BatchNorm folded, saved with the generator). Call :meth:`copy_layers` with the target inpainter's
    layers (``Inpainter.encoder_layers(k)``) before training.
    """

    def __init__(self, widths: list[int], stem_kernel: int = 7, in_channels: int = 4, rank: float = 1.0) -> None:
        super().__init__()
        if not 0 < rank <= 1:
            raise ValueError(f"rank is the share of each layer's rank the head keeps, in (0, 1], got {rank}")
        self.stem = StemGradientHead(widths[0], stem_kernel, in_channels)
        # each layer's rank; the stem (layer 1) stays exact: it is the layer the share depends on most (model card)
        self.ranks = [widths[0]] + [max(1, round(w * rank)) for w in widths[1:]]
        self.factored = rank < 1
        for i in range(1, len(widths)):
            # factored: the layer as a 3x3 convolution down to rank r and a 1x1 one back up (its truncated SVD)
            self.register_buffer(f"weight{i}", torch.zeros(self.ranks[i], widths[i - 1], 3, 3))
            if self.factored:
                self.register_buffer(f"mix{i}", torch.zeros(widths[i], self.ranks[i], 1, 1))
            self.register_buffer(f"shift{i}", torch.zeros(widths[i]))
        self.layers = len(widths)

    @torch.no_grad()
    def copy_layers(self, layers: list[tuple[Tensor, Tensor, Tensor]]) -> None:
        """Take the target's layers as (convolution weight, BatchNorm scale, shift); with ``rank`` < 1, layers
        2..k are kept as the best rank-r approximation of each (truncated SVD of the weight as a matrix)."""
        if len(layers) < self.layers:
            raise ValueError(f"the head carries {self.layers} layers, the inpainter gave {len(layers)}")
        self.stem.copy_layers(layers)
        for i, (weight, scale, shift) in enumerate(layers[1:self.layers], start=1):
            mine = getattr(self, f"weight{i}")
            expected = (len(getattr(self, f"shift{i}")), *mine.shape[1:])  # the layer's own shape, at any rank
            if weight.shape != expected:
                raise ValueError(f"the inpainter's layer {i + 1} has shape {tuple(weight.shape)}, the head "
                                 f"{tuple(expected)}: set stem_channels and head_layers to match it")
            folded = weight * scale[:, None, None, None]  # BatchNorm's scale folded in: one pass per layer
            if self.factored:
                u, s, vh = torch.linalg.svd(folded.flatten(1), full_matrices=False)
                r = self.ranks[i]
                mine.copy_(vh[:r].reshape(mine.shape))
                getattr(self, f"mix{i}").copy_((u[:, :r] * s[:r])[..., None, None])
            else:
                mine.copy_(folded)
            getattr(self, f"shift{i}").copy_(shift)

    def _weight(self, i: int) -> Tensor:
        # channels last, as in the stem head: the CPU's convolutions then skip their layout copies (a 3x faster
        # transpose at 512 px)
        return getattr(self, f"weight{i}").contiguous(memory_format=CHANNELS_LAST)

    def _down(self, i: int, x: Tensor) -> Tensor:
        """Layer i + 1's preactivation on its (padded) input ``x``."""
        if not self.factored:
            return F.conv2d(x, self._weight(i), getattr(self, f"shift{i}"), stride=2)
        return F.conv2d(F.conv2d(x, self._weight(i), stride=2), self._mix(i), getattr(self, f"shift{i}"))

    def _mix(self, i: int) -> Tensor:
        return getattr(self, f"mix{i}").contiguous(memory_format=CHANNELS_LAST)

    def _unmix(self, i: int, g: Tensor) -> Tensor:
        """A field at layer i + 1's output taken to the input of its 3x3 transpose (the 1x1 part's transpose)."""
        return F.conv2d(g, self._mix(i).transpose(0, 1)) if self.factored else g

    @torch.no_grad()
    def encode(self, image: Tensor, mask: Tensor, rows: int | None = None) -> Encoding:
        """The layers' forward pass on the attack's input: what :meth:`forward` (``rows`` None) or :meth:`banded`
        (``rows`` given) gates by, and layer k's output (a global branch's channels after the local ones): what the
        target's bottleneck reads, so what its gradient there is a function of."""
        if rows is None or self.layers == 1:
            z = self.stem.preactivation(image, mask)
            gates, last = self._deep(F.relu(z))
            return Encoding(z, gates, last)
        z2 = self._layer2_banded(image, mask, rows)
        gate2 = z2 > 0
        gates, last = self._deep(z2.relu_(), start=2)  # in place: a 64-channel tensor at half resolution
        return Encoding(None, [gate2] + gates, last)

    def forward(self, field: Tensor, image: Tensor, mask: Tensor, encoding: Encoding | None = None) -> Tensor:
        z, gates, _ = encoding or self.encode(image, mask)
        return self.stem(self._back_to(1, field, gates), image, mask, z)

    def banded(self, field: Tensor, image: Tensor, mask: Tensor, rows: int, encoding: Encoding | None = None
               ) -> Tensor:
        """``forward`` with the full-resolution work done over bands of ``rows`` image rows.

        The same numbers as one pass, but the 32-channel full-resolution tensors (the stem's output and the
        field sent back to it) exist one band at a time; the layers below run whole, at 1/2 resolution and less.
        """
        if self.layers == 1:
            return self.stem.banded(lambda a, b: field[..., a:b, :], image, mask, rows)
        h = image.shape[-2]
        gates = (encoding or self.encode(image, mask, rows)).gates
        g2 = self._unmix(1, self._back_to(2, field, gates).mul_(gates[0]))  # in place: 64 channels, half resolution

        def field_rows(a: int, b: int) -> Tensor:  # rows a..b-1 of layer 2's transpose (the field at the stem)
            lo, hi = max(0, (a - 1) // 2), min(h // 2, b // 2 + 1)
            back = F.conv_transpose2d(g2[..., lo:hi, :], self._weight(1), stride=2, padding=(0, 1),
                                      output_padding=(0, 1))
            return back[..., a - 2 * lo + 1:b - 2 * lo + 1, :]  # its row r is the image's row 2 lo - 1 + r

        return self.stem.banded(field_rows, image, mask, rows)

    def _layer2_banded(self, image: Tensor, mask: Tensor, rows: int) -> Tensor:
        """Layer 2's preactivation, the full-resolution stem run over bands of ``rows`` image rows."""
        h = image.shape[-2]
        pad = self.stem.weight.shape[-1] // 2
        x, weight, _ = self.stem._stem_input(image, mask)
        z2 = None
        for j0 in range(0, h // 2, max(1, rows // 2)):  # layer 2's output rows j0..j1-1 read stem rows 2j-1..2j+1
            j1 = min(h // 2, j0 + max(1, rows // 2))
            a, b = max(0, 2 * j0 - 1), min(h, 2 * j1 + 1)
            stem_rows = F.relu(F.conv2d(x[..., a:b + 2 * pad, :], weight, self.stem.shift))
            # LaMa's reflect padding, in rows only where the band meets the image's edge
            top = stem_rows[..., 1:2, :] if j0 == 0 else stem_rows[..., :0, :]
            bottom = stem_rows[..., -2:-1, :] if 2 * j1 + 1 > h else stem_rows[..., :0, :]
            stem_rows = F.pad(torch.cat([top, stem_rows, bottom], dim=-2), (1, 1, 0, 0), mode="reflect")
            band = self._down(1, stem_rows)
            if z2 is None:  # filled band by band: no list of bands and a copy of them all at the end
                z2 = band.new_empty((*band.shape[:2], h // 2, band.shape[-1])).contiguous(
                    memory_format=CHANNELS_LAST)
            z2[..., j0:j1, :] = band
        return z2

    def _deep(self, h: Tensor, start: int = 1) -> tuple[list[Tensor], Tensor]:
        """The ReLU patterns of layers start+1..k (LaMa's downsampling: reflect padding, 3x3, stride 2) on
        layer start's output ``h``, and layer k's output."""
        gates = []
        for i in range(start, self.layers):
            z = self._down(i, F.pad(h, (1, 1, 1, 1), mode="reflect"))
            gates.append(z > 0)
            h = z.relu_()
        return gates, h

    def _back_to(self, layer: int, field: Tensor, gates: list[Tensor]) -> Tensor:
        """The field at layer k sent back to layer ``layer``'s output through the gated transposes of the layers
        between (``gates[i - 1]``: layer i + 1's pattern)."""
        g = field.contiguous(memory_format=CHANNELS_LAST)
        for i in range(self.layers - 1, layer - 1, -1):
            # in place on the tensors made here (a CPU's where over a bool mask is slower); never on the field
            g = g.mul_(gates[i - 1]) if i < self.layers - 1 else g * gates[i - 1]
            # a stride-2 layer's transpose (the fold back of its reflect padding at the border left out)
            # layer 2's transpose writes the full-resolution field: an export makes it a convolution (transpose.py)
            g = transpose_stride2(self._unmix(i, g), self._weight(i), as_conv=i == 1)
        return g
