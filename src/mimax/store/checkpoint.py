"""Checkpoints: the format, the global RNG states they carry, a content checksum verified on every load,
the run identity that ties a checkpoint to its run, and ``weights_only=True`` loading (they are written
with :func:`save_checkpoint`; their paths belong to :mod:`mimax.store.rundir`)."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mimax.errors import UserError
from mimax.store.atomic import atomic_torch_save

CHECKPOINT_FORMAT = "mimax-checkpoint-v1"
REQUIRED_KEYS = ("method", "architecture", "dataset", "epoch", "step", "seed", "model", "optimizers", "rng",
                 "random_init", "run_id")


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


def content_digest(obj: Any) -> str:
    """SHA-256 over a checkpoint's content (every tensor's dtype, shape and bytes; every other value's
    ``repr``), walked in a fixed order. Independent of pickling, so it is checked after loading."""
    h = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            h.update(b"{")
            for key in sorted(value, key=repr):
                h.update(repr(key).encode() + b":")
                walk(value[key])
            h.update(b"}")
        elif isinstance(value, (list, tuple)):
            h.update(b"[" if isinstance(value, list) else b"(")
            for item in value:
                walk(item)
            h.update(b"]")
        else:
            h.update(f"{type(value).__name__}:{value!r};".encode())

    walk(obj)
    return h.hexdigest()


def seal(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``ckpt`` with its ``checksum`` (:func:`content_digest` of everything else)."""
    body = {k: v for k, v in ckpt.items() if k != "checksum"}
    return {**body, "checksum": content_digest(body)}


def save_checkpoint(ckpt: dict[str, Any], path: Path) -> None:
    """Add the format, seal with the checksum and write atomically."""
    atomic_torch_save(seal({"format": CHECKPOINT_FORMAT, **ckpt}), path)


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
    if "checksum" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint has no checksum (written by an older mimax, or edited); "
                              "refusing to trust it")
    if seal(ckpt)["checksum"] != ckpt["checksum"]:
        raise CheckpointError(f"{path}: checkpoint is corrupt (its content does not match its checksum)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a complete mimax checkpoint (missing {', '.join(missing)})")
    for key in ("epoch", "step", "seed"):
        if not isinstance(ckpt[key], int) or isinstance(ckpt[key], bool) or ckpt[key] < 0:
            raise CheckpointError(f"{path}: not a valid mimax checkpoint ({key} = {ckpt[key]!r})")
    return ckpt


def first_sentence(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line: whitespace collapsed, cut after its first sentence."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    cut = text.find(". ")
    return (text[:cut] if cut > 0 else text)[:limit]
