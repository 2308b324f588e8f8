"""The 2D real FFT pair of LaMa's spectral layers, exportable to ONNX.

    real, imag = rfft2(x)               # torch.fft.rfft2(x, norm="ortho"), as two real tensors
    x = irfft2(real, imag, (h, w))      # torch.fft.irfft2(..., s=(h, w), norm="ortho")

In PyTorch these call ``torch.fft``. While an ONNX export traces them they become
products with cosine and sine matrices built from the runtime height and width:
the TorchScript exporter has no ``aten::fft_rfft2`` and onnxruntime's DFT kernel
fails on dynamic shapes, while MatMul, Cos and Sin run in every onnxruntime
build, the web's included. The matrices cost O(HW(H+W)) per channel, which is
small at the bottleneck resolution these layers run at.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def exporting() -> bool:
    """True while ``torch.onnx.export`` (either exporter) traces the model."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def dft_matrices(n: int, m: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """cos and sin of 2 pi j k / n over sqrt(n), for j < n and k < m: each (n, m), in the dtype of ``like``."""
    j = torch.arange(n, device=like.device).unsqueeze(1)
    k = torch.arange(m, device=like.device).unsqueeze(0)
    # n as a tensor computed in the graph: a Python number would be traced as the example's constant
    count = torch.ones_like(j).sum()
    # reduce j*k modulo n in integers first: the float angle of j*k itself loses precision on large sides
    angle = (j * k % count).to(like.dtype) * (2 * math.pi) / count.to(like.dtype)
    scale = count.to(like.dtype).rsqrt()  # half of the "ortho" 1 / sqrt(n) normalisation pair
    return angle.cos() * scale, angle.sin() * scale


def _rfft2_matmul(x: Tensor) -> tuple[Tensor, Tensor]:
    h, w = x.shape[-2:]
    cos_w, sin_w = dft_matrices(w, w // 2 + 1, x)
    cos_h, sin_h = dft_matrices(h, h, x)
    # the matrices multiply from the right only (the height ones are symmetric, so through a transpose): a
    # left product broadcast over the batch made torch.export fix the batch size at the example's
    re, im = (x @ cos_w).transpose(-1, -2), (x @ -sin_w).transpose(-1, -2)   # along the width, one-sided
    return (re @ cos_h + im @ sin_h).transpose(-1, -2), (im @ cos_h - re @ sin_h).transpose(-1, -2)


def _irfft2_matmul(real: Tensor, imag: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = size
    cos_h, sin_h = dft_matrices(h, h, real)
    real, imag = real.transpose(-1, -2), imag.transpose(-1, -2)
    re = (real @ cos_h - imag @ sin_h).transpose(-1, -2)   # inverse along the height, full
    im = (imag @ cos_h + real @ sin_h).transpose(-1, -2)
    cos_w, sin_w = dft_matrices(w, w // 2 + 1, re)
    # Hermitian symmetry: every bin but DC and (for an even width) Nyquist stands for itself and its mirror
    k = torch.arange(w // 2 + 1, device=re.device)
    twice = 2.0 - ((k == 0) | (2 * k == w)).to(re.dtype)
    return re @ (cos_w * twice).transpose(0, 1) - im @ (sin_w * twice).transpose(0, 1)


def rfft2(x: Tensor) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of ``torch.fft.rfft2(x, norm="ortho")`` over the last two dims, in float32."""
    x = x.float()  # pocketfft and cuFFT need float32; autocast would otherwise hand us half precision
    if exporting():
        return _rfft2_matmul(x)
    f = torch.fft.rfft2(x, norm="ortho")
    return f.real, f.imag


def irfft2(real: Tensor, imag: Tensor, size: tuple[int, int]) -> Tensor:
    """``torch.fft.irfft2(complex(real, imag), s=size, norm="ortho")``, in float32."""
    real, imag = real.float(), imag.float()
    if exporting():
        return _irfft2_matmul(real, imag, size)
    return torch.fft.irfft2(torch.complex(real, imag), s=size, norm="ortho")
