"""The heads' transposed convolutions written as plain convolutions in exported graphs."""

from __future__ import annotations

import onnx
import pytest
import torch
import torch.nn.functional as F

import generator.transpose as transpose
from generator.protector import save_generator
from generator.unet import NoiseUNet, UNetConfig
from trainer.commands.cli import main


@pytest.fixture
def exporting(monkeypatch):
    monkeypatch.setattr(transpose, "exporting", lambda: True)


@pytest.mark.parametrize("h, w", [(1, 1), (5, 8), (9, 13)])
def test_stride2_as_a_convolution_equals_the_transpose(exporting, h, w):
    gen = torch.Generator().manual_seed(h * w)
    x, weight = torch.randn(2, 6, h, w, generator=gen), torch.randn(6, 4, 3, 3, generator=gen)
    expected = F.conv_transpose2d(x, weight, stride=2, padding=1, output_padding=1)
    out = transpose.transpose_stride2(x, weight)
    assert out.shape == expected.shape == (2, 4, 2 * h, 2 * w)
    assert torch.allclose(out, expected, atol=1e-5)
    # as_conv=False keeps the transpose itself (what the layers below full resolution use in an export)
    assert torch.equal(transpose.transpose_stride2(x, weight, as_conv=False), expected)


@pytest.mark.parametrize("k", [3, 7])
def test_full_transpose_as_a_convolution_equals_the_transpose(exporting, k):
    gen = torch.Generator().manual_seed(k)
    x, weight = torch.randn(1, 8, 11, 6, generator=gen), torch.randn(8, 3, k, k, generator=gen)
    expected = F.conv_transpose2d(x, weight)
    out = transpose.transpose_full(x, weight)
    assert out.shape == expected.shape == (1, 3, 11 + k - 1, 6 + k - 1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_outside_an_export_torch_runs_the_transpose_itself(monkeypatch):
    calls = []
    monkeypatch.setattr(F, "conv_transpose2d", lambda *a, **k: calls.append(k) or torch.zeros(1))
    transpose.transpose_full(torch.zeros(1, 2, 3, 3), torch.zeros(2, 1, 3, 3))
    transpose.transpose_stride2(torch.zeros(1, 2, 3, 3), torch.zeros(2, 1, 3, 3))
    assert len(calls) == 2


def test_exported_encoder_head_writes_no_full_resolution_transpose(tmp_path, tiny_inpainter, capsys):
    # onnxruntime's ConvTranspose unrolls its input into a buffer of kernel-size times its output: at full
    # resolution that was most of the default generator's memory, so those two are convolutions in the graph
    net = NoiseUNet(UNetConfig(widths=[8, 16, 16, 32], groups=4, head="stem-gradient", stem_channels=8,
                               head_layers=4, encoder_features=True))
    net.target_encoder.copy_layers(tiny_inpainter.encoder_layers(4))
    out = tmp_path / "g.onnx"
    assert main(["export-onnx", str(save_generator(net, tmp_path / "g.safetensors")), "-o", str(out)]) == 0
    ops = [node.op_type for node in onnx.load(str(out)).graph.node]
    # of the four transposes (layers 4, 3, 2 and the stem) only those of layers 4 and 3 stay ConvTranspose
    assert ops.count("ConvTranspose") == 2
