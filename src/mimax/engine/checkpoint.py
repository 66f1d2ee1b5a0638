"""Checkpoints: atomic writes (temp file + fsync + rename) and ``weights_only=True`` loading."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from mimax.engine import faults
from mimax.errors import UserError

CHECKPOINT_FORMAT = "mimax-checkpoint-v1"
CKPT_RE = re.compile(r"^ckpt_epoch_(\d+)\.pt$")


class CheckpointError(UserError):
    """A checkpoint that cannot be used; ``str(err)`` names the path and the problem in one line."""


class OutputWriteError(UserError):
    """An output file could not be written (disk full, read-only, permissions); names the path."""


TEMP_RE = re.compile(r"^\..+\.tmp$")  # mkstemp names of the atomic writers below: .<name>.<random>.tmp


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temp file in the same directory, fsync, then rename over ``path``: a reader (or a
    resumed run) sees the old file or the new one, never a torn one. A failed write removes the temp
    file and raises :class:`OutputWriteError` naming the path."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if faults.ARMED:
                faults.hit_mid_write("write:" + ("ckpt" if CKPT_RE.match(path.name) else path.name), fh)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputWriteError(f"cannot write {path} ({exc.strerror or exc}); free space or fix permissions, "
                               "then continue with --resume") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic_write(path, lambda fh: torch.save(obj, fh))


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete the temp files an interrupted atomic write left in ``directory`` (not recursive)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.is_file() and TEMP_RE.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest epoch in ``run_dir/checkpoints``, or None."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := CKPT_RE.match(p.name)))
    return found[-1][1] if found else None


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"ckpt_epoch_{epoch:04d}.pt"
