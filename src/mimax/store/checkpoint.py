"""Checkpoints: the format, the global RNG states they carry, and ``weights_only=True`` loading (they are
written with :func:`mimax.store.atomic.atomic_torch_save`; their paths belong to :mod:`mimax.store.rundir`)."""

from __future__ import annotations

import json
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mimax.errors import UserError

CHECKPOINT_FORMAT = "mimax-checkpoint-v1"


class CheckpointError(UserError):
    """A checkpoint that cannot be used; ``str(err)`` names the path and the problem in one line."""


def rng_state() -> dict[str, Any]:
    """Global RNG states in a form ``weights_only`` loading accepts (tensors, lists, ints)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(int, np_state[2:4]),
                  float(np_state[4])],
        "python": json.dumps(random.getstate()),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` (no code execution); one-line CheckpointError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a readable mimax checkpoint (empty file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text:  # weights_only refused to import a callable: unpickling could run code
            raise CheckpointError(f"{path}: refused: it holds pickled objects other than tensors and plain "
                                  "containers (weights_only=True loading)") from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        reason = detail.group(1).strip() if detail else first_sentence(exc)
        raise CheckpointError(f"{path}: not a readable mimax checkpoint ({reason})") from None
    except Exception as exc:  # corrupt, truncated or not a torch file
        raise CheckpointError(f"{path}: not a readable mimax checkpoint ({first_sentence(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a mimax checkpoint (expected format {CHECKPOINT_FORMAT})")
    return ckpt


def first_sentence(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line: whitespace collapsed, cut after its first sentence."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    cut = text.find(". ")
    return (text[:cut] if cut > 0 else text)[:limit]
