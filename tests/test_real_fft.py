"""The ONNX-exportable real FFT pair equals torch.fft, in eager mode and inside an export."""

from __future__ import annotations

import pytest
import torch

from generator import real_fft
from trainer.inpainting.ffc import FourierUnit


@pytest.mark.parametrize("h, w", [(1, 1), (2, 3), (7, 7), (6, 10), (33, 64), (100, 129)])
def test_matmul_transform_equals_torch_fft(h, w):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    f = torch.fft.rfft2(x, norm="ortho")
    real, imag = real_fft._rfft2_matmul(x)
    assert (real - f.real).abs().max() < 1e-5 and (imag - f.imag).abs().max() < 1e-5
    # the inverse of an arbitrary (not Hermitian) spectrum, which is what a convolution on it hands back
    spectrum = torch.randn(2, 2, 2, h, w // 2 + 1, generator=torch.Generator().manual_seed(1))
    expected = torch.fft.irfft2(torch.complex(*spectrum), s=(h, w), norm="ortho")
    assert (real_fft._irfft2_matmul(*spectrum, (h, w)) - expected).abs().max() < 1e-5


def test_large_sides_keep_float32_accuracy():
    # j * k reaches 10^5 here; reducing it modulo n before the float angle keeps the error at rounding level
    x = torch.randn(1, 1, 8, 640, generator=torch.Generator().manual_seed(0))
    real, imag = real_fft._rfft2_matmul(x)
    f = torch.fft.rfft2(x, norm="ortho")
    assert (real - f.real).abs().max() < 1e-4 and (imag - f.imag).abs().max() < 1e-4


def test_export_path_is_taken_only_while_exporting(monkeypatch):
    x = torch.randn(1, 2, 5, 6)
    calls = []
    monkeypatch.setattr(real_fft, "_rfft2_matmul", lambda t: calls.append(t) or (t, t))
    real_fft.rfft2(x)
    assert not calls
    monkeypatch.setattr(real_fft, "exporting", lambda: True)
    real_fft.rfft2(x)
    assert len(calls) == 1


def test_lama_fourier_unit_is_unchanged_by_the_export_path(monkeypatch):
    # big-lama's weights must mean the same thing on both paths
    torch.manual_seed(0)
    unit = FourierUnit(4, 4).eval()
    x = torch.randn(2, 4, 9, 12)
    eager = unit(x)
    monkeypatch.setattr(real_fft, "exporting", lambda: True)
    assert (unit(x) - eager).abs().max() < 1e-5
