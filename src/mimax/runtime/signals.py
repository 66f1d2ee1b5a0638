"""The preemption signals and who handles them: the training process, never its DataLoader workers.

A scheduler that preempts a job signals every process of it: SLURM's ``scancel`` and its time limit send
SIGTERM to all the processes of the job step, DataLoader workers included, and a terminal's ``kill`` of
a process group does the same. A worker killed by it takes the training process down with
"DataLoader worker ... is killed by signal: Terminated" before the loop can write its checkpoint
(:mod:`mimax.engine.preemption`). So every DataLoader of mimax starts its workers with
:func:`leave_preemption_to_the_main_process` as ``worker_init_fn``: they ignore these signals and are
shut down by their DataLoader, as at any run's end, once the training process has checkpointed.
SIGINT (Ctrl-C) needs nothing: torch's workers already leave it to the main process. SIGHUP, which a closed
terminal or ssh session sends to every process it started, is a preemption signal too: the run checkpoints
where it stands instead of dying mid-epoch (unless started under ``nohup``, which ignores it).

Workers that ignore SIGTERM must never outlive their loader: at interpreter exit, multiprocessing's own exit
hook terminates the daemonic children with SIGTERM and then joins them without a timeout, so a loader still
alive at exit (in an uncollected reference cycle, or a module global) hung the finished process forever. Every
mimax loader with workers is therefore registered (:func:`track_workers`); the training loop shuts its loaders'
workers down at each seed's end (:func:`shut_down_workers`), and an exit hook, which runs before
multiprocessing's, collects the garbage and shuts down whatever is left.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import multiprocessing.util  # noqa: F401  its exit hook is registered first, so that ours runs before it
import signal
import weakref
from typing import Any

PREEMPTION_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGHUP")  # SIGHUP: the terminal (an ssh session) closed
_TRACKED: weakref.WeakSet = weakref.WeakSet()  # mimax's DataLoaders whose workers ignore SIGTERM


def leave_preemption_to_the_main_process(worker_id: int = 0) -> None:
    """``worker_init_fn`` of mimax's DataLoaders: ignore :data:`PREEMPTION_SIGNALS` in this worker."""
    for name in PREEMPTION_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def track_workers(loader: Any) -> Any:
    """Register a DataLoader started with :func:`leave_preemption_to_the_main_process`; returns it."""
    if getattr(loader, "num_workers", 0) > 0:
        _TRACKED.add(loader)
    return loader


def stop_iterator_workers(iterator: object) -> None:
    """Stop the worker processes of one DataLoader iterator now (a no-op for any other iterable). A pass
    interrupted by an exception leaves its iterator alive in the traceback's frames, and its workers, which
    ignore SIGTERM (:func:`leave_preemption_to_the_main_process`), then kept the process from exiting."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def shut_down_workers() -> None:
    """Stop the worker processes of every registered DataLoader now, as torch does when a loader's iterator is
    freed; a loader iterated again starts new workers. (A DataLoader with persistent workers keeps its
    iterator in ``_iterator``; torch has no public call for this.)"""
    for loader in list(_TRACKED):
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None:
            loader._iterator = None
            iterator._shutdown_workers()


@atexit.register
def _shut_down_at_exit() -> None:
    # The process is ending: a second Ctrl-C (the first is what ends it) would interrupt this hook with a
    # traceback ("Exception ignored in atexit callback") and skip the shutdown that keeps the exit from hanging.
    with contextlib.suppress(ValueError):  # not the main thread: signals cannot be set, nor delivered here
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.collect()  # a loader's iterator in a reference cycle: freeing it shuts its workers down
    shut_down_workers()
