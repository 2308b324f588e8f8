"""Which floating-point type the networks run in, and whether this machine runs it fast.

bfloat16 halves the generator's time on CPUs with bfloat16 instructions (AVX512-BF16, AMX) at the same share of
the optimiser's gain. Without them oneDNN emulates it: on this project's CPU with its instruction set capped
(``ONEDNN_MAX_CPU_ISA``), the default generator took 2.0 times as long as in float32 with AVX-512 and 44 times
with AVX2 (README, "bfloat16"). So ``"auto"`` picks bfloat16 only where the hardware has it, and asking for it
elsewhere warns.
"""

from __future__ import annotations

import torch

from generator.messages import warn_user

DTYPES = ("float32", "bfloat16")  # float16 took 31 times as long as float32 on a CPU
CHOICES = (*DTYPES, "auto")  # what --dtype accepts: "auto" is bfloat16 where it is native, else float32


def native_bfloat16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes in bfloat16 with its own instructions rather than emulating it."""
    device = torch.device(device)
    if device.type == "cpu":
        # private but long-lived (torch 2.1 on); AMX tiles come with AMX-BF16 on every CPU that has them
        return any(getattr(torch.cpu, probe, lambda: False)()
                   for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def resolve_dtype(name: str | torch.dtype, device: str | torch.device = "cpu", backend: str = "torch") -> torch.dtype:
    """The torch dtype for a ``--dtype`` choice: ``"auto"`` is bfloat16 where ``device`` has it natively and the
    backend runs it (the ONNX export runs in float32). A torch dtype among them is returned as it is."""
    if isinstance(name, torch.dtype) and str(name).removeprefix("torch.") in DTYPES:
        return name  # "unknown dtype torch.bfloat16; choose from float32, bfloat16" read as a contradiction
    if name == "auto":
        return torch.bfloat16 if backend == "torch" and native_bfloat16(device) else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(CHOICES)}")
    return getattr(torch, name)


def labelled(name: str, *notes: str) -> str:
    """A table row's name with its settings in brackets, float32 (the default precision) and empty notes left out:
    ``labelled("hybrid", "k=1", "bfloat16")`` is "hybrid (k=1, bfloat16)", ``labelled("generator", "float32")``
    is "generator". One rule for every benchmark that runs a method in several precisions."""
    shown = [note for note in notes if note and note != "float32"]
    return f"{name} ({', '.join(shown)})" if shown else name


def autocast(device: str | torch.device, dtype: torch.dtype) -> torch.autocast:
    """Where an inpainter's convolutions run, forwards and backwards: in a half ``dtype`` (bfloat16, float16) under
    ``torch.autocast``, whatever holds the noise and its update left in float32; off for float32 and float64."""
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype in (torch.bfloat16, torch.float16))


def warn_if_emulated(dtype: torch.dtype, device: str | torch.device) -> None:
    """Warn when ``dtype`` is bfloat16 on a device that would emulate it, many times slower than float32."""
    if dtype == torch.bfloat16 and not native_bfloat16(device):
        device = torch.device(device)
        what = ("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)" if device.type == "cpu"
                else f"{device} has no native bfloat16")
        warn_user(f"{what}: bfloat16 runs emulated, 2 to 44 times as long as float32 on the instruction sets "
                  "measured; use float32, or 'auto' to pick")
