"""Console output that outlives its reader.

A run's log is often read through a pipe (``mimax train ... | tee log``, ``| head``, an ssh session): when the
reader goes away, the next ``print`` raises ``BrokenPipeError`` (``EIO`` on a terminal that hung up), and a
training run died of it at its next progress line, blamed on the disk. The console is not the record of a run
(its files are), so :func:`output_survives_its_reader` makes ``sys.stdout`` and ``sys.stderr`` drop their
output from then on instead, and the run carries on to its end and its exit code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

GONE = (errno.EPIPE, errno.EIO)  # the reading end closed; the terminal hung up


class ReaderGoneSafe:
    """A text stream whose writes and flushes are dropped once its reader is gone. The file descriptor is then
    pointed at ``/dev/null``, so that the stream's buffered text and the interpreter's last flush at exit do not
    fail again; every other attribute is the wrapped stream's."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.gone = False

    def _reader_gone(self) -> None:
        self.gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except OSError as exc:
                if exc.errno not in GONE:
                    raise
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as exc:
                if exc.errno not in GONE:
                    raise
                self._reader_gone()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def output_survives_its_reader() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` wrapped in :class:`ReaderGoneSafe` for the block, then restored."""
    saved = sys.stdout, sys.stderr
    closed = []  # a stream closed at start (`mimax ... >&- 2>&-`) is None: its output goes to /dev/null
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            closed.append(open(os.devnull, "w"))  # noqa: SIM115 -- closed below
            stream = closed[-1]
        setattr(sys, name, stream if isinstance(stream, ReaderGoneSafe) else ReaderGoneSafe(stream))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        for stream in closed:
            stream.close()
