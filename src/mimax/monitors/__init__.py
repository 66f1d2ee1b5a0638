"""Monitors that watch a run without changing it: MI estimates (``mi.csv``) and collapse statistics
(extra ``metrics.csv`` columns). They run in eval mode under ``no_grad`` on the dataset's fixed monitor
set and draw no numbers from the global RNG, so a monitored run trains exactly as an unmonitored one."""

from __future__ import annotations

from pathlib import Path

from mimax.callbacks import Callback
from mimax.monitors.collapse import CollapseMonitor
from mimax.monitors.figure import MonitorsFigure
from mimax.monitors.mi import MIMonitor


def default_callbacks(cfg, run_dir: Path, figure: bool = True) -> list[Callback]:
    """The monitors every run gets: the collapse monitor each epoch (with ``--stop_on_collapse``), the MI
    monitor every ``--mi_interval`` epochs (off when it is 0), and (``figure``) ``monitors.png`` at the end.
    A custom ``callbacks_factory`` should include these."""
    callbacks: list[Callback] = [CollapseMonitor(cfg.mi_batch_size, cfg.stop_on_collapse)]
    if cfg.mi_interval > 0:
        callbacks.append(MIMonitor(run_dir, cfg.mi_interval, cfg.mi_batch_size, cfg.mi_temperature, cfg.epochs,
                                   cfg.mi_critic_interval))
    if figure:
        callbacks.append(MonitorsFigure(run_dir))
    return callbacks


__all__ = ["CollapseMonitor", "MIMonitor", "MonitorsFigure", "default_callbacks"]
