"""Deterministic fault injection for the kill-safety tests (``tests/killharness.py``).

Set ``MIMAX_KILL_AT=<point>:<n>`` and the process SIGKILLs itself the ``n``-th time it reaches the named
point, exactly where a power cut or an OOM killer could strike. Points (see docs/reliability.md):

- ``step``: after an optimizer step (and EMA update), before the step counter advances;
- ``eval``: inside an evaluation, after the first encoder's features are extracted;
- ``write:<name>``: inside an atomic write of file ``<name>`` (``ckpt`` for any checkpoint), after the
  temporary file holds half of the bytes and before the rename;
- ``seed_done``: after a seed's ``results.json``, before the next seed starts;
- ``results``: after the experiment's ``results.json``, before ``results.md`` and ``status.json``.

``MIMAX_SIGNAL_AT=<SIGNAL>:<point>:<n>`` (e.g. ``SIGTERM:step:7``) instead sends the process that signal
at the ``n``-th arrival: a preemption notice at an exact step (the preemption tests).

Cost when unset: the environment is read once at import; the call sites outside the training step test
the module constant ``ARMED`` before calling :func:`hit`, and the ``step`` point is installed on the
method by :func:`arm_step` only when armed, so the training step carries no hook at all.
"""

from __future__ import annotations

import os
import signal

ENV = "MIMAX_KILL_AT"


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    point, _, count = spec.rpartition(":")
    if not point or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENV}={spec!r}: expected <point>:<n> with n >= 1, e.g. write:ckpt:2")
    return point, int(count)


SIGNAL_ENV = "MIMAX_SIGNAL_AT"


def _parse_signal(spec: str | None) -> tuple[int, str, int] | None:
    if not spec:
        return None
    name, _, rest = spec.partition(":")
    if not hasattr(signal, name):
        raise ValueError(f"{SIGNAL_ENV}={spec!r}: unknown signal {name!r}; expected e.g. SIGTERM:step:7")
    point, count = _parse(rest) or ("", 0)
    return int(getattr(signal, name)), point, count


_TARGET = _parse(os.environ.get(ENV))
_SIGNAL = _parse_signal(os.environ.get(SIGNAL_ENV))
ARMED = _TARGET is not None or _SIGNAL is not None
_seen: dict[str, int] = {}
_signal_seen: dict[str, int] = {}


def arm_signal(spec: str | None) -> None:
    """Set (or with None clear) the ``MIMAX_SIGNAL_AT`` target in this process (in-process tests)."""
    global _SIGNAL, ARMED
    _SIGNAL = _parse_signal(spec)
    _signal_seen.clear()
    ARMED = _TARGET is not None or _SIGNAL is not None


def hit(point: str) -> None:
    """Count one arrival at ``point``; SIGKILL this process (or send it the configured signal) at the
    configured arrival."""
    if _SIGNAL is not None and point == _SIGNAL[1]:
        _signal_seen[point] = _signal_seen.get(point, 0) + 1
        if _signal_seen[point] == _SIGNAL[2]:
            os.kill(os.getpid(), _SIGNAL[0])
    if _TARGET is None or point != _TARGET[0]:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] == _TARGET[1]:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def hit_mid_write(point: str, fh) -> None:
    """At the configured arrival, cut the open temp file to half its bytes (a torn write), then SIGKILL."""
    if _TARGET is None or point != _TARGET[0] or _seen.get(point, 0) + 1 != _TARGET[1]:
        hit(point)
        return
    fh.truncate(fh.tell() // 2)
    fh.flush()
    os.fsync(fh.fileno())
    hit(point)


def arm_step(method) -> None:
    """The ``step`` point: wrap the method's ``after_step`` (called after every optimizer step and EMA
    update, before the step counter advances) so that the configured arrival kills the process."""
    inner = method.after_step

    def after_step(step: int, total_steps: int) -> None:
        inner(step, total_steps)
        hit("step")

    method.after_step = after_step
