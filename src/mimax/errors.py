"""User-facing errors and the one-line argument parser.

The CLI prints ``mimax: error: <message>`` (one line) for a :class:`UserError` and exits with code 2; a
:class:`TrainingDiverged` exits with code 3. Every layer may raise these: this module imports nothing
from mimax.
"""

from __future__ import annotations

import argparse
import sys


class UserError(Exception):
    """A mistake in what the user asked for (flags, paths, data, checkpoints): no traceback is shown."""


class ConfigError(UserError):
    """A user mistake in the configuration. ``str(err)`` is the one-line message shown to the user;
    ``flag`` names the flag (``--epochs``), empty when argparse itself refused the command line."""

    def __init__(self, flag: str, message: str):
        self.flag = flag
        super().__init__(f"{flag}: {message}" if flag else message)


class DataError(UserError):
    """Data that is missing or not in the expected layout; the message names the path and the layout."""

    @classmethod
    def one_line(cls, exc: DataError) -> DataError:
        """A DataError raised in a DataLoader worker arrives with the worker's traceback in its message
        ("Caught DataError in DataLoader worker process 0. Original Traceback ..."): its own last line."""
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        last = lines[-1] if lines else str(exc)
        return cls(last.split("DataError: ", 1)[-1])


class MethodError(UserError):
    """A user-defined method that does not keep the method contract (docs/extending.md), e.g. an objective
    that returns no scalar ``"loss"``; the message names the method's function."""


class CollapseStopped(Exception):
    """``--stop_on_collapse`` ended a run whose embeddings collapsed; the CLI exits with code 4. The epoch's
    checkpoint is kept and the run is resumable."""


class TrainingDiverged(Exception):
    """Training produced a non-finite loss, gradient or weight (``--on_nan``); the CLI exits with code 3."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the user can do next (``str(err)``: "continue with: mimax train --resume DIR"); the CLI
    prints ``mimax: interrupted; <that>`` and exits with code 130. A bare KeyboardInterrupt has no advice."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a user mistake as one line and exit code 2 (no usage dump): its errors are
    raised as :class:`ConfigError`, which the CLI prints as ``mimax: error: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError("", message)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """argparse's ``parse_args``, except that a value given to a flag that takes none
        (``--projector_bn maybe``) is refused naming that flag, not as an unrecognized argument."""
        argv = list(sys.argv[1:] if args is None else args)
        namespace, extras = self.parse_known_args(argv, namespace)
        if extras:
            self.error(self._value_of_a_switch(argv, extras[0]) or f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def _value_of_a_switch(self, argv: list[str], token: str) -> str | None:
        """The message for ``token`` left over right after a flag that takes no value, else None."""
        if token.startswith("-"):
            return None
        for before, after in zip(argv, argv[1:]):
            action = self._option_string_actions.get(before)
            if after == token and action is not None and action.nargs == 0 and before.startswith("--"):
                return f"{before}: a switch takes no value (got {token!r}); give {before} alone, or leave it out"
        return None


def environment_error(exc: BaseException) -> str | None:
    """The one-line message for a failure of the machine rather than of mimax (a full disk or inode
    table, a quota, a name too long, no memory, no more processes), or None for anything else."""
    import errno

    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc)
        hint = {errno.ENOSPC: "; free space", errno.EDQUOT: "; free space", errno.EFBIG: "; free space",
                errno.EAGAIN: "; lower --num_workers", errno.EMFILE: "; lower --num_workers",
                errno.ENAMETOOLONG: "; use a shorter path"}.get(exc.errno, "")
        return f"{where}{reason}{hint}"
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text:
        detail = text.split("DefaultCPUAllocator: ")[-1][:160] or "MemoryError"
        return f"out of memory ({detail}); use smaller sizes (--batch_size, widths, dataset sizes)"
    return None
