"""Results of deterministic computations on tensors, kept in a folder that concurrent runs share.

``mimax demo`` trains fifteen configurations whose networks start from the same initialization for a
given seed: their epoch-0 features, hence their random-init probe accuracies and trained-critic estimates,
coincide. A result is keyed by the SHA-256 of everything it is computed from (each tensor's shape, dtype and
bytes, and the options), so a hit is the value the computation would return on this machine and thread
count: the computations cached here draw randomness only from their own seeded generators.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mimax.store.atomic import write_json


def tensor_key(tensors: Sequence[Tensor], options: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``options`` (JSON, keys sorted) and of each tensor's shape, dtype and bytes."""
    h = hashlib.sha256(json.dumps(sorted(options.items()), default=str).encode())
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)} {t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype, bfloat16 included
    return h.hexdigest()


def recall(folder: Path | None, tensors: Sequence[Tensor], options: dict[str, Any],
           compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, or the result an earlier call stored in ``folder`` for the same ``tensors`` and
    ``options`` (:func:`tensor_key`). ``folder`` None: computed, nothing hashed. New results are written
    atomically, so concurrent processes may share the folder; an unreadable entry is computed again and
    rewritten."""
    if folder is None:
        return compute()
    path = Path(folder) / f"{tensor_key(tensors, options)}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result
