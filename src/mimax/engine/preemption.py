"""Preemption: SIGTERM / SIGUSR1 (what SLURM and Kubernetes send before killing a job), SIGHUP (the terminal
or ssh session closed; not under ``nohup``) and time-based checkpoints (``--save_every_minutes``).

A handler only records the signal; the training loop asks :meth:`Preemption.due` after every optimizer
step and at every epoch end, writes a checkpoint at that point (mid-epoch if need be) and raises
:class:`Preempted`, which the CLI turns into one line and exit code :data:`EXIT_PREEMPTED`. Under
``torchrun`` rank 0 decides and tells the others every :data:`SYNC_INTERVAL` steps, so they all stop at the
same step.
"""

from __future__ import annotations

import signal
import threading
import time

from mimax.runtime import distributed
from mimax.runtime.signals import PREEMPTION_SIGNALS

EXIT_PREEMPTED = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, run the same command again
SYNC_INTERVAL = 10


class Preempted(Exception):
    """Training stopped on a signal after writing a checkpoint; ``str(err)`` is the one line to print."""


class Preemption:
    """Signal flag and checkpoint clock of one training session (a context manager installing handlers)."""

    def __init__(self, save_every_minutes: float | None = None):
        self.signal_name: str | None = None
        self.interval = None if not save_every_minutes else 60.0 * save_every_minutes
        self.last_save = time.monotonic()
        self._previous: dict[int, object] = {}
        self._calls = 0

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for name in PREEMPTION_SIGNALS:  # DataLoader workers ignore them (mimax.runtime.signals)
                if hasattr(signal, name):
                    sig = getattr(signal, name)
                    if name == "SIGHUP" and signal.getsignal(sig) is signal.SIG_IGN:
                        continue  # nohup: the user asked the run to outlive its terminal
                    self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _record(self, signum: int, frame) -> None:
        self.signal_name = signal.Signals(signum).name

    def saved(self) -> None:
        """A checkpoint was just written: restart the ``--save_every_minutes`` clock."""
        self.last_save = time.monotonic()

    def due(self) -> tuple[bool, bool]:
        """``(stop, save)``: stop on a signal (after a checkpoint), or just save on the clock."""
        stop = self.signal_name is not None
        save = self.interval is not None and time.monotonic() - self.last_save >= self.interval
        if distributed.world_size() > 1:
            self._calls += 1
            if self._calls % SYNC_INTERVAL:
                return False, False
            # rank 0 decides for all (the scheduler signals every task; its clock is the one that counts)
            stop, save, name = distributed.broadcast_object((stop, save, self.signal_name))
            self.signal_name = name
        return stop, stop or save
