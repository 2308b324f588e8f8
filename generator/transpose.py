"""The heads' transposed convolutions, written as plain convolutions in exported graphs.

onnxruntime's ConvTranspose (native, and onnxruntime-web's WebAssembly build of the same kernels) unrolls its
whole input into a column buffer: for the stem's 7x7 transpose 147 floats per image pixel, for layer 2's 72,
most of the default generator's memory at 1 MP and beyond (13128 MiB at 3840x2160). Its Conv works in bounded
segments. So an export writes the two transposes that make full-resolution tensors as the convolutions they
equal: 5813 MiB at 3840x2160, for a quarter more time in native onnxruntime (benchmarks/protect_speed.py, README
"Memory with the default generator"); the deeper ones stay ConvTranspose (small buffers, and a convolution would
compute 16 taps for their 9). PyTorch itself keeps ``conv_transpose2d``, which its CPU kernels run faster and
which the generator runs over bands of rows there (``NoiseUNet.band_rows``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def exporting() -> bool:
    """True while an ONNX export (TorchScript tracing or torch.export) records the graph."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def transpose_full(x: Tensor, weight: Tensor) -> Tensor:
    """``F.conv_transpose2d(x, weight)`` (stride 1, no padding: the output is k - 1 pixels larger)."""
    if not exporting():
        return F.conv_transpose2d(x, weight)
    k = weight.shape[-1]
    # the transpose of a convolution is the convolution with the kernel flipped and its channels swapped
    return F.conv2d(x, weight.transpose(0, 1).flip(-2, -1), padding=k - 1)


def transpose_stride2(x: Tensor, weight: Tensor, as_conv: bool = True) -> Tensor:
    """``F.conv_transpose2d(x, weight, stride=2, padding=1, output_padding=1)`` for a 3x3 ``weight``: the output
    is exactly twice the input's size. ``as_conv``: written as a convolution when exporting."""
    if not (exporting() and as_conv):
        return F.conv_transpose2d(x, weight, stride=2, padding=1, output_padding=1)
    # output row 2u takes input row u through kernel row 1; row 2u + 1 takes rows u and u + 1 through kernel rows
    # 2 and 0 (columns alike). So a 2x2 convolution makes the four phases (row parity, column parity) of every
    # output channel at the input's resolution, and a pixel shuffle interleaves them.
    taps = ([(0, 1)], [(0, 2), (1, 0)])  # per parity: (offset in the input, kernel index)
    c, o = weight.shape[:2]
    kernel = weight.new_zeros(o, 2, 2, c, 2, 2)  # (output channel, row parity, column parity, input channel, 2, 2)
    for a in (0, 1):
        for b in (0, 1):
            for dy, ky in taps[a]:
                for dx, kx in taps[b]:
                    kernel[:, a, b, :, dy, dx] = weight[:, :, ky, kx].t()
    return F.pixel_shuffle(F.conv2d(F.pad(x, (0, 1, 0, 1)), kernel.reshape(4 * o, c, 2, 2)), 2)
