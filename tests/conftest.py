"""Shared test helpers. Tests run on the CPU with one thread and tiny models."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

# Small, fast Gaussian-mixture settings for end-to-end runs (seconds each). The trained-critic MI estimate is
# off (it would add critic fits to every run); the tests of the critic turn it on with a later
# "--mi_critic_interval 0" (the last value of a flag wins).
TINY_GAUSSIAN = ["--dataset", "Gaussian", "--gm_train_size", "512", "--gm_test_size", "256",
                 "--gm_monitor_size", "256", "--batch_size", "64", "--num_threads", "1", "--mi_critic_interval", "-1"]


def run_main(args: list[str], cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python main.py ARGS`` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env=env)


def run_mimax(args: list[str], cwd: Path | None = None, timeout: int = 300,
              kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``python -m mimax ARGS`` (the ``mimax`` console script) in a subprocess; ``kill_at``: its
    ``MIMAX_KILL_AT`` (:mod:`mimax.store.faults`)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("MIMAX_KILL_AT", None)
    if kill_at:
        env["MIMAX_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "mimax", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env=env)


def run_cli(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``mimax ARGS`` through the CLI's own ``main`` in this process: the same parser, messages and exit
    codes as the console script, without a new interpreter importing torch (seconds per call). For
    commands that are refused during validation or only read files; what only a real process shows (no
    traceback, signals, resource limits) is tested with :func:`run_mimax` / :func:`run_main`."""
    from mimax.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's --help and usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["mimax", *args], code, out.getvalue(), err.getvalue())


def pytest_xdist_auto_num_workers(config) -> int:
    """Workers of ``-n auto`` (pyproject.toml's addopts): one per core this process may use, at most 8. Each
    test runs one torch thread (its subprocesses too), so more workers than cores only contend; past 8 the
    memory of one torch import per worker buys little. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides it."""
    given = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(given) if given else max(1, min(8, cores))


@pytest.fixture
def tiny_gaussian() -> list[str]:
    return list(TINY_GAUSSIAN)
