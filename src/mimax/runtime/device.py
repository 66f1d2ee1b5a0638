"""The training device."""

from __future__ import annotations

import re

import torch

from mimax.errors import ConfigError

DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(?::(\d+))?")


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` is CUDA when available, else the CPU; a malformed name, or a CUDA or MPS
    device this machine does not have, is a :class:`ConfigError`."""
    m = DEVICE_RE.fullmatch(name)
    if m is None:
        raise ConfigError("--device", f"expected auto, cpu, cuda, cuda:N or mps (got {name!r})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device", f"{name} requested but CUDA is not available on this machine")
        if int(m.group(1) or 0) >= torch.cuda.device_count():
            raise ConfigError("--device", f"{name} requested but this machine has {torch.cuda.device_count()} "
                                          "CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device", "mps requested but Apple's MPS is not available on this machine")
    return torch.device(name)
