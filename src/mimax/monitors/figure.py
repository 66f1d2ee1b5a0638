"""One monitors figure per run (``monitors.png``): every monitor of docs/monitoring.md over training, drawn
from the run's ``metrics.csv`` and ``mi.csv``.

Panels: (a) the trained-critic MI estimate with its 95% interval, embedding and backbone, under its log N
ceiling; (b) the fixed-critic contrast scores' gaps (not MI); (c) RankMe and the effective rank per encoder;
(d) LiDAR per representation; (e) alpha-ReQ per encoder; (f) alignment and uniformity.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from mimax.bounds import BOUNDS
from mimax.callbacks import Callback, RunState
from mimax.monitors.mi import CRITIC_ESTIMATOR
from mimax.naming import printable
from mimax.store.atomic import atomic_write_bytes, read_csv
from mimax.store.rundir import SeedDir

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot():
    """matplotlib's pyplot on the file backend, imported when a figure is drawn: the monitors are imported by
    every run (and by each of the demo's workers), most of which draw no figure here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _num(v: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _columns(rows: list[dict[str, str]], prefix: str) -> dict[str, tuple[list[int], list[float]]]:
    """``{suffix: (epochs, values)}`` for every column ``<prefix><suffix>`` with at least one number."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    keys = sorted({k for r in rows for k in r if k.startswith(prefix)})
    for k in keys:
        pts = [(int(r["epoch"]), _num(r.get(k, ""))) for r in rows]
        pts = [(e, v) for e, v in pts if not math.isnan(v)]
        if pts:
            out[k[len(prefix):]] = ([e for e, _ in pts], [v for _, v in pts])
    return out


def plot_monitors(seed_dir: str | Path, title: str | None = None) -> Figure:
    """The monitors figure of one run directory (``seed_<k>``, or any folder with ``metrics.csv``)."""
    d = Path(seed_dir)
    sd = SeedDir.at(d)
    metrics = read_csv(sd.metrics_csv)
    mi = read_csv(sd.mi_csv)
    from matplotlib.ticker import MaxNLocator

    fig, axes = _pyplot().subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    ax = axes[0, 0]
    for rep, colour in (("embedding", "#1f77b4"), ("backbone", "#d62728")):
        rows = [r for r in mi if r["estimator"] == CRITIC_ESTIMATOR and r["representation"] == rep]
        if rows:
            e = [int(r["epoch"]) for r in rows]
            ax.plot(e, [_num(r["value"]) for r in rows], "o-", color=colour, label=f"{rep} (trained critic)")
            ax.fill_between(e, [_num(r["ci_low"]) for r in rows], [_num(r["ci_high"]) for r in rows],
                            color=colour, alpha=0.2)
            log_n = _num(rows[0]["log_n"])
            ax.axhline(log_n, color=colour, ls=":", lw=1, label=f"log N = {log_n:.2f}")
    ax.set_title("(a) MI estimate, trained critic (nats, 95% CI)")
    ax = axes[0, 1]
    for est, style in zip(BOUNDS, ("-", "--", ":")):
        rows = [r for r in mi if r["estimator"] == est and r["representation"] == "embedding"]
        if rows:
            ax.plot([int(r["epoch"]) for r in rows], [_num(r["gap"]) for r in rows], style, label=f"{est} gap")
    ax.set_title("(b) fixed-critic contrast: paired − shuffled (not MI)")
    panels = ((axes[0, 2], ("rankme_", "emb_erank_"), "(c) RankMe (solid), effective rank (dashed)"),
              (axes[1, 0], ("lidar_",), "(d) LiDAR"),
              (axes[1, 1], ("alpha_req_",), "(e) α-ReQ (eigenspectrum decay)"),
              (axes[1, 2], ("alignment_", "uniformity_"), "(f) alignment (solid), uniformity (dashed)"))
    for ax, prefixes, title_ in panels:
        for prefix, style in zip(prefixes, ("-", "--")):
            for key, (e, v) in _columns(metrics, prefix).items():
                ax.plot(e, v, style, marker=".", label=f"{prefix.rstrip('_')} {key}")
        ax.set_title(title_)
    for ax in axes.flat:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 0.5 ticks on short runs
        lo, hi = ax.get_xlim()
        if hi - lo < 2:  # one epoch measured (e.g. LiDAR at the last epoch only): a span whole ticks can mark
            ax.set_xlim((lo + hi) / 2 - 1, (lo + hi) / 2 + 1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle(printable(title or f"monitors: {d.parent.name}/{d.name}"))
    return fig


def save_monitors_figure(seed_dir: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Draw :func:`plot_monitors` and write it atomically (default ``seed_dir/monitors.png``)."""
    out = Path(out) if out is not None else SeedDir.at(seed_dir).monitors_png
    fig = plot_monitors(seed_dir, title)
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix.lstrip(".") or "png", dpi=120)
    _pyplot().close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


class MonitorsFigure(Callback):
    """Writes ``run_dir/monitors.png`` when a run completes."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_train_end(self, state: RunState) -> None:
        if SeedDir.at(self.run_dir).metrics_csv.is_file():
            title = f"{state.cfg.model_name} on {state.cfg.dataset}, seed {state.seed}"
            save_monitors_figure(self.run_dir, title=title)
