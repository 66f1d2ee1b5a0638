"""What the engine needs from a dataset: two-view batches for pretraining, clean labelled sets for
evaluation, and a fixed set of view pairs for the MI monitors."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor
from torch.utils.data import Dataset

from mimax.errors import DataError


class ViewLoader(Protocol):
    """Pretraining batches of one rank. ``epoch(e)`` yields ``(x_a, x_b)`` view batches on the training
    device, this rank's ``batch_size / world`` pairs of each step, and depends only on the run seed and
    ``e``, so a resumed run sees exactly the batches it would have seen.
    ``epoch(e, start=k)`` yields exactly the batches ``k, k+1, ...`` of that same epoch (a run resumed
    from a mid-epoch checkpoint), without loading the ``k`` batches before them."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]: ...


def per_rank_batch(batch_size: int, world: int) -> int:
    """``batch_size / world``; the global batch must split evenly over the ranks (config validation
    refuses other launches before any work)."""
    if batch_size % world:
        raise ValueError(f"the global batch {batch_size} must be divisible by the number of processes ({world})")
    return batch_size // world


@dataclass
class DataBundle:
    """A dataset prepared for one run."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    train_views: ViewLoader
    probe_train: Dataset | None  # (x, y) without augmentation, for the linear probe / kNN
    probe_test: Dataset | None
    monitor_views: tuple[Tensor, Tensor] | None = None  # fixed (x_a, x_b) pairs for the MI monitors
    monitor_labels: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class NotAFile(ValueError):
    """A path given as a file that is missing, a folder, or a device or socket; the message says which."""


_PIPES: dict[tuple[int, int], bytes] = {}  # (device, inode) of a pipe -> the bytes read from it


def read_file_or_pipe(path: Path) -> bytes:
    """The bytes of a regular file, or of a pipe (a shell's ``<(printf ...)`` as ``/dev/fd/63``, a FIFO): a pipe
    is read once and its bytes are kept for the next call, as a path may be read more than once (validation,
    then each seed) and a pipe holds its bytes only once. :class:`NotAFile` for a path that is missing ("file
    not found"), a folder ("is a directory, not a file") or a device or socket (which may never end); OSError
    when it cannot be read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotAFile("file not found") from None
    if stat.S_ISDIR(st.st_mode):
        raise NotAFile("is a directory, not a file")
    if stat.S_ISREG(st.st_mode):
        return Path(path).read_bytes()
    if not stat.S_ISFIFO(st.st_mode):
        raise NotAFile("not a regular file or pipe (a device or socket)")
    key = (st.st_dev, st.st_ino)
    if key not in _PIPES:
        _PIPES[key] = Path(path).read_bytes()
    return _PIPES[key]


def read_text_file(path: Path) -> str:
    """A data set's text file (class list, ``wnids.txt``, annotations) as UTF-8 text, a leading byte-order mark
    dropped (Notepad writes one: it became part of the first class id); anything unreadable is one
    :class:`DataError` line naming the file (a UTF-16 list was a UnicodeDecodeError traceback, a folder in its
    place a "cannot write" output error)."""
    try:
        return read_file_or_pipe(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (save it as UTF-8)") from None
    except NotAFile as exc:
        raise DataError(f"{path}: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
