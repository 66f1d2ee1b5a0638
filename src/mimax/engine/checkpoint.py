"""Checkpoints: atomic writes (temp file + fsync + rename), ``weights_only=True`` loading, a content
checksum verified on every load, and the run identity that ties a checkpoint to its run.

File names: ``ckpt_epoch_<e>.pt`` after epoch ``e``; ``ckpt_epoch_<e>_step_<k>.pt`` after ``k`` steps of
epoch ``e + 1`` (a mid-epoch checkpoint, written on SIGTERM/SIGUSR1 or by ``--save_every_minutes``).
"""

from __future__ import annotations

import hashlib
import io
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
CKPT_RE = re.compile(r"^ckpt_epoch_(\d+)(?:_step_(\d+))?\.pt$")
REQUIRED_KEYS = ("method", "architecture", "dataset", "epoch", "step", "seed", "model", "optimizers", "rng",
                 "random_init", "run_id")


class CheckpointError(UserError):
    """A checkpoint that cannot be used; ``str(err)`` names the path and the problem in one line."""


class OutputWriteError(UserError):
    """An output file could not be written (disk full, read-only, permissions); names the path."""


def _file_mode() -> int:
    """``0o666`` less the process umask: what ``open()`` would create (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


TEMP_RE = re.compile(r"^\..+\.tmp$")  # mkstemp names of the atomic writers below: .<name>.<random>.tmp


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temp file in the same directory, fsync, then rename over ``path``: a reader (or a
    resumed run) sees the old file or the new one, never a torn one. A failed write removes the temp
    file and raises :class:`OutputWriteError` naming the path."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _file_mode())  # shareable like any file the user creates: respect the umask
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
        raise OutputWriteError(f"cannot write {path} ({exc.strerror or exc})") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(out: Path, overwrite: bool, flag: str = "--out") -> Path:
    """An output file of plot/table/export: refuse an existing one without ``--overwrite``, and never
    replace anything but a regular file (a device node, FIFO, directory or symlink stays as it is)."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise UserError(f"{flag}: {out} exists and is not a regular file; refusing to replace it")
    if out.exists() and not overwrite:
        raise UserError(f"{flag}: {out} already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise UserError(f"{flag}: directory {out.parent} does not exist")
    return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Serialize in memory first: torch's zip writer turns a failed write (full disk) into a RuntimeError
    without the errno; writing the finished bytes reports the real OSError (ENOSPC, EDQUOT, EFBIG)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getbuffer())


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
    """Seal and write atomically."""
    atomic_torch_save(seal({"format": CHECKPOINT_FORMAT, **ckpt}), path)


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


def checkpoint_position(path: Path) -> tuple[int, int] | None:
    """``(completed epochs, steps into the next epoch)`` from a checkpoint's name, or None."""
    m = CKPT_RE.match(Path(path).name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints of ``run_dir/checkpoints``, oldest first (by training position)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    found = sorted((pos, p) for p in ckpt_dir.iterdir() if (pos := checkpoint_position(p)) is not None)
    return [p for _, p in found]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint furthest into training in ``run_dir/checkpoints``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def checkpoint_path(run_dir: Path, epoch: int, step_in_epoch: int = 0) -> Path:
    """Where the checkpoint after ``epoch`` epochs and ``step_in_epoch`` steps of the next one goes."""
    mid = f"_step_{step_in_epoch:06d}" if step_in_epoch else ""
    return Path(run_dir) / "checkpoints" / f"ckpt_epoch_{epoch:04d}{mid}.pt"


def remove_superseded_mid_epoch(run_dir: Path, newest: Path) -> None:
    """Delete the mid-epoch checkpoints older than ``newest`` (they only exist to survive preemption)."""
    keep = checkpoint_position(newest)
    for p in list_checkpoints(run_dir):
        pos = checkpoint_position(p)
        if pos is not None and pos[1] and pos < keep:
            p.unlink(missing_ok=True)
