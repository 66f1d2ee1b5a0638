"""Keep freed memory in the process (glibc): no page fault per temporary tensor of a CPU training step.

glibc's ``malloc`` serves a request above its mmap threshold (128 KiB at start) with a fresh ``mmap`` and
gives the heap's free top back to the kernel once it exceeds the trim threshold (twice the mmap threshold,
which it raises as large blocks are freed). A CPU training step allocates and frees many tensors of
that size (a 256 x 256 score matrix is 256 KiB, its gradient, exponential and masks as many again), so
memory went back to the kernel at every step and every first touch of it the next step was a page fault:
a fresh 256 KiB buffer costs 64 faults, 220 µs on a 2-core AMD EPYC VM, where filling it costs ~5 µs. In
``mimax demo`` that was ~300 faults per step and up to 40% of SimCLR's step (docs/performance.md).

:func:`keep_freed_memory` sets the mmap threshold to glibc's maximum (32 MiB: tensors up to that size come
from the heap) and the trim threshold to 256 MiB, so a step's temporaries reuse the previous step's pages.
The cost is memory the process keeps after its peak (at most the trim threshold above what it uses).
It changes no number, only where memory comes from. Left alone: other C libraries, and a user's own
choice (``MALLOC_*`` / ``GLIBC_TUNABLES`` in the environment, or jemalloc / tcmalloc in ``LD_PRELOAD``),
which PyTorch's CPU tuning guide recommends and which mimax does not override.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 256 << 20

_applied: bool | None = None  # once per process


def users_allocator_choice(environ: dict[str, str] | os._Environ = os.environ) -> str | None:
    """The environment variable through which the user chose the allocator's behaviour, if any."""
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"):
        if name in environ:
            return name
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    if any(lib in environ.get("LD_PRELOAD", "") for lib in ("jemalloc", "tcmalloc", "mimalloc")):
        return "LD_PRELOAD"
    return None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (see the module docstring); returns whether
    they are set. A no-op returning False with another C library or when the user chose the allocator."""
    global _applied
    if _applied is None:
        _applied = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and users_allocator_choice() is None:
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                         TRIM_THRESHOLD))
    return _applied
