"""Shared pieces of the benchmark scripts: machine description, step timing, the benchmark backbone.

Not tests: these scripts time things; run them on an otherwise idle machine (the load average is printed).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1 (a 0 or negative count is a usage error, not a crash later)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def known(parser, flag: str, given: list[str], choices) -> list[str]:
    """``given`` if every entry is one of ``choices``, else a usage error naming ``flag`` (exit 2)."""
    unknown = [g for g in given if g not in choices]
    if unknown:
        parser.error(f"{flag}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(sorted(choices))}")
    return given


def machine_info() -> str:
    import torchvision

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return "\n".join([
        f"machine: {cpu}, {os.cpu_count()} logical cores, GPU: {gpu}",
        f"load average (1/5/15 min) at start: {' '.join(f'{x:.2f}' for x in load)}",
        f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"torch threads {torch.get_num_threads()}",
    ])


def median_step_time(step: Callable[[], None], warmup: int, steps: int) -> float:
    """Median wall time of ``steps`` calls of ``step`` after ``warmup`` untimed calls (seconds)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cifar_resnet18(width: int) -> tuple[torch.nn.Module, int]:
    """mimax's CIFAR-stem ResNet-18 backbone at base width ``width`` (the ``--resnet_width`` flag)."""
    from mimax.nets.backbones import build_backbone

    try:
        return build_backbone("ResNet18", (3, 32, 32), resnet_width=width)
    except TypeError:
        sys.exit("this mimax build has no --resnet_width (images branch not merged); cannot build the "
                 "width-16 benchmark backbone")
