"""``--dtype auto`` and the warning for emulated bfloat16: bfloat16 is fast only where the hardware has it."""

import warnings

import pytest
import torch

from generator.precision import native_bfloat16, resolve_dtype
from generator.protector import Protector


def test_auto_picks_bfloat16_only_where_it_is_native(native):
    assert native_bfloat16("cpu") is native
    assert resolve_dtype("auto") == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("auto", backend="onnx") == torch.float32  # onnxruntime runs the float32 export
    assert (resolve_dtype("float32"), resolve_dtype("bfloat16")) == (torch.float32, torch.bfloat16)
    assert not native_bfloat16("meta")
    with pytest.raises(ValueError, match="unknown dtype 'float16'; choose from float32, bfloat16, auto"):
        resolve_dtype("float16")


def test_emulated_bfloat16_warns_once_where_it_is_asked_for(native):
    net = torch.nn.Conv2d(3, 3, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Protector(net, dtype=torch.float32)
        Protector(net, dtype=torch.bfloat16).to("cpu")  # moving to the same place does not warn again
        Protector(net).to(dtype=torch.bfloat16)
        Protector.iterative(torch.nn.Identity(), dtype=torch.bfloat16)  # from a class method, two frames down
    assert [str(w.message).split(":")[0] for w in caught] == (
        [] if native else ["this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)"] * 3)
    assert all(w.filename == __file__ for w in caught)  # it points at the caller's line
