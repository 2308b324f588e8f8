"""Whether this torch can run on a device, decided before anything is loaded, moved or written."""

from __future__ import annotations

import torch


def unusable(device: str | torch.device) -> str | None:
    """Why this torch cannot run on ``device`` (a CPU-only build has no 'cuda'), or None when it can.

    Decided without creating a context on the device: every process of a multi-GPU run asks."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):  # TypeError: None, a float, a list
        return "not a torch device (cpu, cuda, cuda:1, ...)"
    if device.type == "cpu":
        return None
    if device.type == "meta":  # torch has it, but it only describes shapes
        return "'meta' tensors hold no values; use cpu or a GPU"
    backend = getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        return f"this torch ({torch.__version__}) has no {device.type} device"
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        return f"{count} {device.type} device(s), numbered from 0"
    return None


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, or a one-sentence ValueError saying why this torch cannot use it."""
    reason = unusable(device)
    if reason is not None:
        raise ValueError(f"device '{device}' cannot be used here: {reason}")
    return torch.device(device)
