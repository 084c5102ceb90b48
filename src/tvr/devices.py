"""Turning a user's device name into a torch device, with errors the CLI can print as one line."""

from __future__ import annotations

import torch

from tvr.errors import TvrError


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when available, else CPU; any other name must be a device this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TvrError(f"device {name!r} is not a device name (auto, cpu, cuda, cuda:1, …)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TvrError(f"device {name!r} requested but CUDA is not available on this machine")
    return device
