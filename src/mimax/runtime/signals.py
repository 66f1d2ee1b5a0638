"""The preemption signals and who handles them: the training process, never its DataLoader workers.

A scheduler that preempts a job signals every process of it: SLURM's ``scancel`` and its time limit send
SIGTERM to all the processes of the job step, DataLoader workers included, and a terminal's ``kill`` of
a process group does the same. A worker killed by it takes the training process down with
"DataLoader worker ... is killed by signal: Terminated" before the loop can write its checkpoint
(:mod:`mimax.engine.preemption`). So every DataLoader of mimax starts its workers with
:func:`leave_preemption_to_the_main_process` as ``worker_init_fn``: they ignore these signals and are
shut down by their DataLoader, as at any run's end, once the training process has checkpointed.
SIGINT (Ctrl-C) needs nothing: torch's workers already leave it to the main process.
"""

from __future__ import annotations

import signal

PREEMPTION_SIGNALS = ("SIGTERM", "SIGUSR1")


def leave_preemption_to_the_main_process(worker_id: int = 0) -> None:
    """``worker_init_fn`` of mimax's DataLoaders: ignore :data:`PREEMPTION_SIGNALS` in this worker."""
    for name in PREEMPTION_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
