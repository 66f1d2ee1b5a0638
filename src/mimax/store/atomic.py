"""Atomic file writes (temp file + fsync + rename) and the JSON/CSV files of a run.

A reader, or a resumed run, sees the old file or the new one, never a torn one. The test-only fault hook
(:mod:`mimax.store.faults`) sits inside the write, between the half-written temp file and the rename.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

from mimax.errors import UserError
from mimax.store import faults

# checkpoint file names (layout: mimax.store.rundir): ckpt_epoch_<e>.pt after epoch e, ckpt_epoch_<e>_step_<k>.pt
# after k steps of epoch e + 1 (mid-epoch: preemption, --save_every_minutes)
CKPT_RE = re.compile(r"^ckpt_epoch_(\d+)(?:_step_(\d+))?\.pt$")
# mkstemp's names for the atomic writers below: .<target name>.<8 random characters>.tmp (group 1: the target)
TEMP_RE = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")


class OutputWriteError(UserError):
    """An output file could not be written (disk full, read-only, permissions); names the path."""


def checkpoint_position(path: Path) -> tuple[int, int] | None:
    """``(completed epochs, steps into the next epoch)`` from a checkpoint's file name, or None."""
    m = CKPT_RE.match(Path(path).name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def _file_mode() -> int:
    """``0o666`` less the process umask: what ``open()`` would create (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


NAME_MAX = 255  # bytes of a file name on Linux file systems (ext4, xfs, btrfs, tmpfs)


def _temp_prefix(name: str) -> str:
    """``.<name>.``, the temp file's prefix, cut so that with mkstemp's 8 characters and ``.tmp`` the temp
    name fits NAME_MAX: a legal output name of up to 255 bytes could not be written (its temp name was 14 bytes
    longer)."""
    return os.fsdecode(os.fsencode(f".{name}.")[: NAME_MAX - len("abcdefgh.tmp")])  # bytes, as the kernel counts


def _write_temp(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """The bytes ``write`` makes, in a temp file beside ``path``, fsynced; returns the temp file. A failed write
    removes it and raises :class:`OutputWriteError` naming ``path``."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _file_mode())  # shareable like any file the user creates: respect the umask
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if faults.ARMED:
                faults.hit_mid_write("write:" + ("ckpt" if CKPT_RE.match(path.name) else path.name), fh)
            os.fsync(fh.fileno())
        return Path(tmp)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputWriteError(f"cannot write {path} ({exc.strerror or exc})") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def _rename(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputWriteError(f"cannot write {path} ({exc.strerror or exc})") from None


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temp file in the same directory, fsync, then rename over ``path``: a reader (or a
    resumed run) sees the old file or the new one, never a torn one. A failed write removes the temp
    file and raises :class:`OutputWriteError` naming the path."""
    path = Path(path)
    _rename(_write_temp(path, write), path)


@contextlib.contextmanager
def staged_bytes(path: Path, data: bytes) -> Iterator[Callable[[], None]]:
    """Two files replaced together: ``data`` is written in full (temp file, fsync) on entering, and the block
    gets ``commit``, which renames it over ``path``; a block left without committing removes the temp file.
    Staging the large file first means a full disk fails before anything is replaced."""
    path = Path(path)
    tmp = _write_temp(path, lambda fh: fh.write(data))
    done = []

    def commit() -> None:
        _rename(tmp, path)
        done.append(True)

    try:
        yield commit
    finally:
        if not done:
            tmp.unlink(missing_ok=True)


def make_parent(path: Path) -> None:
    """Create ``path``'s folder (and its missing parents) for a file about to be written; a failure is the same
    :class:`OutputWriteError` as the write's, naming the file."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot write {path} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def parent_made_for(path: Path) -> Iterator[None]:
    """``path``'s folder, made (:func:`make_parent`) for the block; if the block fails (a full disk), the
    folders it made are removed again while empty: a failed output leaves nothing behind."""
    parent = Path(path).parent
    existing = next((p for p in [parent, *parent.parents] if os.path.lexists(p)), None)
    make_parent(path)
    try:
        yield
    except BaseException:
        for p in [parent, *parent.parents]:
            if p == existing:
                break
            try:
                p.rmdir()
            except OSError:
                break
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """``text`` as UTF-8. A path that is not UTF-8 (lone surrogates, :func:`mimax.naming.printable`) is written
    as its escape ``\\udcff``, which inside a JSON string is the JSON escape of the same character: the file
    stays valid UTF-8 and JSON, and reads back as the path."""
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Serialize in memory first: torch's zip writer turns a failed write (full disk) into a RuntimeError
    without the errno; writing the finished bytes reports the real OSError (ENOSPC, EDQUOT, EFBIG)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getbuffer())


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


def temp_file_of(name: str, owned: Callable[[str], bool]) -> bool:
    """Whether ``name`` is the temp file of an atomic write of a file ``owned`` says is mimax's: a user's own
    ``.notes.tmp``, or a temp name around a file mimax does not write, is not."""
    m = TEMP_RE.match(name)
    return bool(m and owned(m.group(1)))


def remove_stale_temp_files(directory: Path, owned: Callable[[str], bool]) -> list[Path]:
    """Delete the temp files interrupted atomic writes of mimax's files (``owned`` names them) left in
    ``directory`` (not recursive); nothing else."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.is_file() and not p.is_symlink() and temp_file_of(p.name, owned)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def remove_torn_writes(path: Path) -> None:
    """Delete the temp files that killed atomic writes of ``path`` left beside it: only mkstemp's names for that
    very file (``.<name>.<8 random characters>.tmp``), once the file itself has been written again."""
    path = Path(path)
    own = re.compile(rf"^{re.escape(_temp_prefix(path.name))}[a-z0-9_]{{8}}\.tmp$")
    for p in path.parent.iterdir():
        if own.match(p.name) and not p.is_symlink() and p.is_file():
            p.unlink(missing_ok=True)


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None: JSON has no such numbers, and Python's
    ``NaN`` token is refused by strict parsers (JavaScript's ``JSON.parse``, Go, Rust's serde_json)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """Rewrite a JSON file atomically, keys sorted, non-finite floats as ``null`` (:func:`strict_json`);
    ``indent=None``: compact, for files rewritten often."""
    text = json.dumps(strict_json(obj), indent=indent, sort_keys=True, default=str, allow_nan=False)
    atomic_write_text(Path(path), text + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite a CSV atomically; columns are the union of the rows' keys in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buf.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
