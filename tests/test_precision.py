"""``--dtype auto``, the warning for emulated bfloat16 (fast only where the hardware has it), and the benchmarks'
one rule for labelling a row by its precision."""

import warnings

import pytest
import torch

from generator.precision import labelled, native_bfloat16, resolve_dtype
from generator.protector import Protector
from generator.unet import UNetConfig


def test_auto_picks_bfloat16_only_where_it_is_native(native):
    assert native_bfloat16("cpu") is native
    assert resolve_dtype("auto") == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("auto", backend="onnx") == torch.float32  # onnxruntime runs the float32 export
    assert (resolve_dtype("float32"), resolve_dtype("bfloat16")) == (torch.float32, torch.bfloat16)
    assert resolve_dtype(torch.bfloat16) is torch.bfloat16  # "unknown dtype torch.bfloat16" before
    with pytest.raises(ValueError, match="unknown dtype torch.float16"):
        resolve_dtype(torch.float16)
    assert not native_bfloat16("meta")
    with pytest.raises(ValueError, match="unknown dtype 'float16'; choose from float32, bfloat16, auto"):
        resolve_dtype("float16")


def test_rows_are_labelled_by_their_settings_float32_left_out():
    assert [labelled("g", dtype, "torch.compile" if compiled else "") for dtype, compiled in
            (("float32", False), ("float32", True), ("bfloat16", False), ("bfloat16", True))] == [
        "g", "g (torch.compile)", "g (bfloat16)", "g (bfloat16, torch.compile)"]
    assert labelled("hybrid", "k=2", "bfloat16") == "hybrid (k=2, bfloat16)"
    assert labelled("optimiser", "20 steps", "float32") == "optimiser (20 steps)"


class Zero(torch.nn.Module):
    """A generator that adds no noise: what is measured here is where the Protector warns, not what it makes."""

    config = UNetConfig()

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))

    def forward(self, image, mask, target):
        return image * self.scale


class Copy(torch.nn.Module):
    """An inpainter that fills the hole with the image's mean."""

    def forward(self, image, mask):
        return image * (1 - mask) + image.mean(dim=(1, 2, 3), keepdim=True) * mask


def test_emulated_bfloat16_warns_once_where_it_runs(native):
    image, mask = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    mask[..., 4:8, 4:8] = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Protector(Zero(), dtype=torch.float32).protect(image, mask)
        protector = Protector(Zero(), dtype=torch.bfloat16).to("cpu")
        assert not caught  # built or moved, nothing has run yet
        protector.protect(image, mask)
        protector.protect(image, mask)  # once per device and dtype
        Protector(Zero()).to(dtype=torch.bfloat16).noise(image, mask)
        Protector.iterative(Copy(), dtype=torch.bfloat16).protect(image, mask, method="iterative", steps=1)
    assert [str(w.message).split(":")[0] for w in caught] == (
        [] if native else ["this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)"] * 3)
    assert all(w.filename == __file__ for w in caught)  # it points at the caller's line


def test_the_warning_is_about_the_device_it_runs_on(monkeypatch):
    """Built where bfloat16 is emulated (the CLI builds on the CPU) and run where it is native: no warning."""
    image, mask = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    mask[..., :2, :] = 0
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    protector = Protector(Zero(), dtype=torch.bfloat16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # now where it runs is native
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        protector.protect(image, mask)
    assert not caught
