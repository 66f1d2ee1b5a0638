"""Monitors that watch a run without changing it: MI estimates (``mi.csv``) and collapse statistics
(extra ``metrics.csv`` columns). They run in eval mode under ``no_grad`` on the dataset's fixed monitor
set and draw no numbers from the global RNG, so a monitored run trains exactly as an unmonitored one."""

from __future__ import annotations

from pathlib import Path

from mimax.callbacks import Callback
from mimax.monitors.collapse import CollapseMonitor
from mimax.monitors.mi import MIMonitor


def default_callbacks(cfg, run_dir: Path) -> list[Callback]:
    """The monitors every run gets: the collapse monitor each epoch, and the MI monitor every
    ``--mi_interval`` epochs (off when it is 0). A custom ``callbacks_factory`` should include these."""
    callbacks: list[Callback] = [CollapseMonitor(cfg.mi_batch_size)]
    if cfg.mi_interval > 0:
        callbacks.append(MIMonitor(run_dir, cfg.mi_interval, cfg.mi_batch_size, cfg.mi_temperature, cfg.epochs))
    return callbacks


__all__ = ["CollapseMonitor", "MIMonitor", "default_callbacks"]
