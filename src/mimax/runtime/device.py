"""The training device and the clock of an epoch on it."""

from __future__ import annotations

import os
import re
import time

import torch

from mimax.errors import ConfigError

# the autocast dtype of each --precision (fp32: no autocast); training, evaluation and re-evaluation share it
PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_to(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op for ``dtype=None`` (fp32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def memory_bytes() -> int:
    """Physical memory of this machine (a generous bound for what a run, or one data file, may allocate)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return 2**62


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


def start_epoch_clock(device: torch.device) -> float:
    """The start of an epoch's timing: on CUDA the queued work is finished first and the peak-memory
    counter reset, so that an epoch's time and ``peak_memory_gb`` are its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    return time.perf_counter()


def stop_epoch_clock(device: torch.device, start: float) -> float:
    """Seconds since :func:`start_epoch_clock`, after the device has finished the epoch's kernels (CUDA
    runs asynchronously: without the synchronization an epoch's time would miss its last queued steps)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def peak_memory_gb(device: torch.device) -> float | None:
    """Peak memory allocated by tensors on a CUDA device since the epoch's clock started, in GiB
    (``None`` elsewhere: the CPU has no allocator counter to read)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
