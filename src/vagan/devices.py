"""Device selection, done when a command runs (never at import time)."""

from __future__ import annotations

import torch

from vagan.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda[:i]`` -> a usable device, or a :class:`ConfigError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a torch device (use auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device is {name!r} but CUDA is not available on this machine; use cpu or auto")
    return device
