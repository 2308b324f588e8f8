import fractions
import os
import stat

import pytest
import torch
from torch import nn

from generator import Protector
from generator import checkpoint
from generator.checkpoint import CheckpointError
from generator.protector import load_generator, save_generator
from generator.unet import NoiseUNet, UNetConfig
from trainer.inpainting.inpainter import save_inpainter

SMALL = UNetConfig(widths=[8, 16, 24], groups=4)


def loud(net: NoiseUNet) -> NoiseUNet:
    """Scale the output layer up so that tanh saturates: the bound must hold anyway."""
    with torch.no_grad():
        net.head[0].weight.normal_(std=10.0)
    return net


@pytest.mark.parametrize("h,w", [(16, 16), (37, 53), (5, 70), (64, 40)])
def test_noise_is_bounded_by_construction_at_any_size(h, w):
    torch.manual_seed(0)
    net = loud(NoiseUNet(SMALL))
    image, mask = torch.rand(2, 3, h, w), (torch.rand(2, 1, h, w) > 0.5).float()
    noise = net(image, mask, torch.tensor([[0.0, 1, 0], [1, 0, 0]]))
    assert noise.shape == image.shape
    assert noise.abs().max() <= SMALL.eps
    assert noise.abs().max() > 0.9 * SMALL.eps  # saturated, so the bound really is doing the work


def test_no_batchnorm_and_target_changes_the_noise():
    torch.manual_seed(0)
    net = loud(NoiseUNet(SMALL))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    image, mask = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    assert not torch.allclose(net(image, mask, torch.tensor([[0.0, 1, 0]])), net(image, mask, torch.tensor([[1.0, 0, 0]])))


def test_protector_round_trip_by_path_and_name(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = loud(NoiseUNet(SMALL)).eval()
    path = save_generator(net, tmp_path / "g.safetensors")
    image, mask = torch.rand(2, 3, 40, 30), (torch.rand(2, 1, 40, 30) > 0.5).float()
    protector = Protector.from_checkpoint(path)
    protected = protector.protect(image, mask)
    assert protected.shape == image.shape
    assert (protected - image).abs().max() <= 0.025 + 1e-6
    assert 0 <= protected.min() and protected.max() <= 1
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(tmp_path))
    assert torch.equal(Protector.from_checkpoint("g").protect(image, mask), protected)


def test_saved_checkpoints_get_the_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_generator(NoiseUNet(UNetConfig(widths=[8, 16], groups=4)), tmp_path / "g.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not safetensors' owner-only 0600


def test_save_generator_checks_what_it_writes(tmp_path):
    """A Protector failed with an AttributeError, a number as a note inside safetensors; a note named 'format'
    replaced the checkpoint's format."""
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    with pytest.raises(TypeError, match=r"writes a NoiseUNet, got Protector \(pass its .net\)"):
        save_generator(Protector(net), tmp_path / "g.safetensors")
    for notes in ({"step": 3}, {"format": "mine"}):
        with pytest.raises(TypeError, match="checkpoint notes are strings, under any name but 'format'"):
            save_generator(net, tmp_path / "g.safetensors", **notes)
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder; give the checkpoint file's name"):
        save_generator(net, tmp_path / "folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    assert load_generator(save_generator(net, tmp_path / "g.safetensors", step="3")).config == net.config


def test_protector_rejects_an_inpainter_and_unknown_names(tmp_path, monkeypatch, tiny_inpainter):
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(tmp_path))
    inp = save_inpainter(tiny_inpainter, tmp_path / "inp.safetensors")
    with pytest.raises(CheckpointError, match="is an inpainter checkpoint, expected"):
        Protector.from_checkpoint(inp)
    with pytest.raises(CheckpointError, match="no generator checkpoint 'missing'"):
        load_generator("missing")


def test_protector_checks_shapes():
    protector = Protector(NoiseUNet(SMALL))
    with pytest.raises(ValueError, match="does not match"):
        protector.protect(torch.rand(1, 3, 16, 16), torch.rand(1, 1, 16, 8))


# what a damaged or foreign file gives torch.load: struct.error, KeyError, EOFError, UnpicklingError, RuntimeError
@pytest.mark.parametrize("content", [b"junk", b"hello world\n", b"", b'{"a": 1}', b"\x80\x04\x95", b"PK\x03\x04x"])
def test_torch_load_failures_are_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        checkpoint.torch_load(path, "Lightning checkpoint")
    message = str(err.value)
    assert message.startswith(f"cannot read Lightning checkpoint '{path}': not a PyTorch checkpoint, or a damaged one")
    assert "\n" not in message and "weights_only" not in message  # not torch's advice to unpickle unsafely
    with pytest.raises(CheckpointError, match="No such file"):
        checkpoint.torch_load(tmp_path / "missing.ckpt")


@pytest.mark.parametrize("content, code", [("fraction", "'fractions.Fraction'"),
                                           (b"corrupt\n", "'orrupt.'")])  # "c" is pickle's import opcode
def test_a_file_that_names_code_is_refused_without_torch_s_advice_to_run_it(tmp_path, content, code):
    path = tmp_path / "bad.ckpt"
    if content == "fraction":
        torch.save(fractions.Fraction(1, 3), path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        checkpoint.torch_load(path, "Lightning checkpoint")
    assert str(err.value) == (f"cannot read Lightning checkpoint '{path}' safely: it refers to code, {code}, which a "
                              "weights-only load never runs (or the file is damaged)")  # not "if you trust" it


def test_torch_load_keeps_weights_only(tmp_path, monkeypatch):
    seen = {}

    def fake_load(path, **kwargs):
        seen.update(kwargs)
        return {}

    monkeypatch.setattr(torch, "load", fake_load)
    assert checkpoint.torch_load(tmp_path / "x.ckpt", mmap=True) == {}
    assert seen == {"map_location": "cpu", "weights_only": True, "mmap": True}


def test_an_onnx_export_as_a_generator_checkpoint_says_which_backend_runs_it(tmp_path):
    onnx_file = tmp_path / "gen.onnx"
    onnx_file.write_bytes(b"\x08\x07\x12\x09paintguard")  # an ONNX file's first bytes: no safetensors header
    with pytest.raises(CheckpointError, match=r"^'.*gen\.onnx' is an ONNX export, not a safetensors checkpoint; "
                                              r"pass --backend onnx to run it$"):
        load_generator(onnx_file)
    with pytest.raises(CheckpointError, match=r"is an ONNX export, not a safetensors checkpoint$"):
        checkpoint.load(onnx_file, "inpainter")  # --backend means nothing for an inpainter
