"""Figures from run directories (matplotlib, Agg backend; no display needed); every figure is written
with :func:`save_figure` (atomically).

Figure 2 of the paper (:func:`plot_mi`): the fixed-critic scores of ``mi.csv`` over training (contrast scores,
not MI estimates: the trained-critic estimate is drawn by :mod:`mimax.monitors.figure`) in the paper's
layout, the SDMI family (self-distillation) in the top row and the JMI family (joint) in the bottom row,
one column per estimator; every configuration has its own colour and marker.

Accuracy against training time (:func:`plot_accuracy_vs_time`): each evaluation of ``eval.csv`` at the
training wall time spent up to its epoch (the sum of ``metrics.csv``'s ``epoch_time_s``), one curve per
configuration (seeds averaged), linear probe and kNN side by side; the random init is the point at time 0.

Run directories of one configuration that differ only in their seeds are one curve in both figures
(:func:`group_runs`), by ``mimax table``'s own rule (:func:`mimax.evaluation.table.run_configuration`:
``config.json`` equal apart from the seed, the number of runs and the runtime flags other than ``--precision``)
and with its refusal (:func:`mimax.evaluation.table.check_mergeable`): a seed given twice is a one-line error,
never counted twice. Other configurations are curves of their own.

Figure 3 of the paper (:func:`plot_trajectories`): cluster-center embeddings over training, one panel per
run. For a 2-D embedding the centers move on the unit circle; for 3-D on the unit sphere (drawn in 3-D
axes with a light wireframe); for D > 3 the panels draw the first 3 coordinates, and the title says so.
Each of the K trajectories is drawn with opacity rising with training time,
and its final position is marked.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Line3DCollection  # noqa: E402

from mimax.bounds import BOUNDS
from mimax.errors import UserError
from mimax.evaluation.table import check_mergeable, run_configuration
from mimax.experiments.trajectories import load_trajectories
from mimax.methods import METHODS
from mimax.store.atomic import atomic_write_bytes, read_csv, remove_torn_writes
from mimax.store.rundir import ExperimentDir, SeedDir, run_label

MI_COLUMNS = ("epoch", "representation", "estimator", "value", "shuffled", "gap", "log_n", "std_u")
UNITS = {"cos-DV": "score (nats scale, not MI)", "InfoNCE": "score (nats scale, not MI)",
         "JSD": "JSD score (not nats)"}
FAMILIES = {  # paradigm -> (row / legend name, line style)
    "self-distillation": ("SDMI family (self-distillation)", "-"),
    "joint": ("JMI family (joint)", "--"),
}
OTHER_FAMILY = ("other", "-.")


@dataclass(eq=False)
class MICurves:
    """One run directory's ``mi.csv`` for one representation, averaged over its seeds."""

    label: str
    source: str  # the directory, for labels when two runs share a method
    method: str
    paradigm: str
    tau_est: float
    epochs: np.ndarray
    # estimator -> {"value" | "shuffled" | "gap": (mean over seeds, sample std over seeds)} per epoch
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    std_u: np.ndarray | None = None
    log_n: float | None = None


def _paradigm(method: str) -> str:
    cls = METHODS.get(method)
    return cls.paradigm if cls is not None else "unknown"


def _read_mi_csv(path: Path) -> list[dict[str, str]]:
    try:
        rows = read_csv(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    if not rows:
        raise UserError(f"{path}: holds no MI estimates")
    missing = [c for c in MI_COLUMNS if c not in rows[0]]
    if missing:
        raise UserError(f"{path}: not a mimax mi.csv (missing column(s) {', '.join(missing)})")
    return rows


def _seed_dirs(d: Path) -> tuple[list[SeedDir], Path]:
    """``(seed directories, config.json)`` of a run directory: an experiment (its seeds in numeric order) or
    one ``seed_<k>`` directory."""
    if not d.is_dir():
        raise UserError(f"{d}: not a directory (expected a mimax run directory)")
    here = SeedDir.at(d)
    if any(f.is_file() for f in (here.mi_csv, here.eval_csv, here.metrics_csv)):  # one seed directory
        return [here], here.config_json if here.config_json.is_file() else ExperimentDir(d.parent).config_json
    exp = ExperimentDir(d)
    return exp.seeds(), exp.config_json


def _run_info(d: Path) -> dict[str, Any]:
    """``{"dir", "config", "seeds", "method", "dataset"}`` of a run directory, as ``mimax table`` compares
    experiments: its :func:`~mimax.evaluation.table.run_configuration` (None without a readable config.json)
    and the seeds of its ``seed_<k>`` directories."""
    seeds, config = _seed_dirs(d) if d.is_dir() else ([], None)
    try:
        saved = json.loads(config.read_text()) if config is not None else None
    except (OSError, ValueError):
        saved = None
    saved = saved if isinstance(saved, dict) else None
    known = [s.seed for s in seeds if s.seed >= 0]
    return {"dir": str(d), "config": run_configuration(saved), "seeds": known if len(known) == len(seeds) else None,
            "method": (saved or {}).get("model_name"), "dataset": (saved or {}).get("dataset")}


def group_runs(run_dirs: Sequence[str | Path]) -> list[list[Path]]:
    """The run directories grouped by configuration, in the order given: directories of one configuration
    (``mimax table``'s rule) are seeds of one curve, and one whose seeds overlap another's is refused as
    ``mimax table`` refuses it; a directory without a readable config is a group of its own."""
    groups: list[tuple[dict[str, Any], list[Path]]] = []
    for d in map(Path, run_dirs):
        run = _run_info(d)
        same = next((g for g in groups if run["config"] is not None and g[0]["config"] == run["config"]), None)
        if same is None:
            groups.append((run, [d]))
            continue
        check_mergeable(same[0], run, str(run["method"]), str(run["dataset"]))
        same[0]["seeds"] = same[0]["seeds"] + run["seeds"]
        same[1].append(d)
    return [dirs for _, dirs in groups]


def _one_configuration(dirs: list[Path]) -> None:
    """Refuse a list of run directories that :func:`group_runs` would not draw as one curve."""
    groups = group_runs(dirs)
    if len(groups) > 1:  # two configurations (or an unknown one): check_mergeable refuses them, naming why
        other = _run_info(groups[1][0])
        check_mergeable(_run_info(groups[0][0]), other, str(other["method"]), str(other["dataset"]))


def load_mi_curves(run_dir: str | Path | Sequence[str | Path], representation: str = "embedding") -> MICurves:
    """Read a run directory: an experiment directory (``config.json`` + ``seed_<k>/mi.csv``, averaged over
    the seeds at the epochs they share) or one ``seed_<k>`` directory; or a list of run directories of one
    configuration (:func:`group_runs`; other lists are refused), their seeds averaged together. Raises a
    one-line ``UserError``."""
    dirs = [Path(run_dir)] if isinstance(run_dir, (str, Path)) else [Path(r) for r in run_dir]
    d, config = dirs[0], _seed_dirs(dirs[0])[1]
    if len(dirs) > 1:
        _one_configuration(dirs)
    csv_files = [s.mi_csv for one in dirs for s in _seed_dirs(one)[0] if s.mi_csv.is_file()]
    if not csv_files:
        raise UserError(f"{d}: no mi.csv found (not a mimax run directory, or trained with --mi_interval 0)")
    try:
        cfg = json.loads(config.read_text())
        method = str(cfg["model_name"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{config}: missing or unreadable run config (needs model_name)") from None
    per_seed = []
    for path in csv_files:
        rows = [r for r in _read_mi_csv(path)  # the fixed-critic scores (trained-critic rows: monitors figure)
                if r["representation"] == representation and r["estimator"] in BOUNDS]
        if not rows:
            raise UserError(f"{path}: no rows for --representation {representation!r}")
        try:
            per_seed.append({(int(r["epoch"]), r["estimator"]): r for r in rows})
        except ValueError:
            raise UserError(f"{path}: malformed epoch column") from None
    epochs = sorted(set.intersection(*({e for e, _ in seed} for seed in per_seed)))
    if not epochs:
        raise UserError(f"{d}: its seeds' mi.csv files share no epoch")
    source = run_label(d) if len(dirs) == 1 else f"{run_label(d)} + {len(dirs) - 1}"
    try:
        curves = MICurves(label=method, source=source, method=method, paradigm=_paradigm(method),
                          tau_est=float(next(iter(per_seed[0].values()))["tau_est"]), epochs=np.array(epochs))
        for est in BOUNDS:
            if not all((e, est) in seed for seed in per_seed for e in epochs):
                continue
            curves.series[est] = {}
            for col in ("value", "shuffled", "gap"):
                vals = np.array([[float(seed[(e, est)][col]) for e in epochs] for seed in per_seed])
                spread = vals.std(0, ddof=1) if len(vals) > 1 else np.zeros(len(epochs))  # sample std over seeds
                curves.series[est][col] = (vals.mean(0), spread)
            if est == "InfoNCE" and per_seed[0][(epochs[0], est)]["log_n"]:
                curves.log_n = float(per_seed[0][(epochs[0], est)]["log_n"])
        first_est = next(iter(curves.series), None)
        if first_est is not None:
            curves.std_u = np.mean([[float(seed[(e, first_est)]["std_u"]) for e in epochs] for seed in per_seed], 0)
    except ValueError:
        raise UserError(f"{d}: mi.csv holds a non-numeric estimate") from None
    if not curves.series:
        raise UserError(f"{d}: mi.csv holds none of the estimators {', '.join(BOUNDS)}")
    return curves


# Distinct colours (tab10, then dark tones) and markers: every configuration gets its own pair.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#000000", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d", "H", "8")
FAMILY_ORDER = ("self-distillation", "joint")


def _styles(runs: list[MICurves]) -> list[tuple[str, str, str]]:
    """(line style, colour, marker) per run: the family gives the line style; every run its own colour and
    its own marker, distinct over the whole figure (16 colours x 15 markers)."""
    return [(FAMILIES.get(run.paradigm, OTHER_FAMILY)[1], COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)])
            for i, run in enumerate(runs)]


def _family_rows(runs: list[MICurves]) -> list[str]:
    """The paradigms drawn, one row each: SDMI family on top, JMI family below (others last)."""
    present = {r.paradigm for r in runs}
    return [p for p in FAMILY_ORDER if p in present] + sorted(present - set(FAMILY_ORDER))


def _ceiling_fits(values: list[np.ndarray], log_n: float) -> bool:
    """Draw the InfoNCE ceiling only if it does not squash the curves (within half their range above them)."""
    lo = min(float(np.nanmin(v)) for v in values)
    hi = max(float(np.nanmax(v)) for v in values)
    return log_n <= hi + 0.5 * max(hi - lo, 1e-9)


def plot_mi(runs: Sequence[str | Path | MICurves], labels: Sequence[str] | None = None,
            representation: str = "embedding", quantity: str = "value") -> Figure:
    """Figure 2 in the paper's layout: the SDMI family (self-distillation) in the top row, the JMI family
    (joint) in the bottom row, one column per estimator (cos-DV, InfoNCE, JSD). Each run is one curve with
    its own colour and marker (mean over seeds, band = sample std); ``quantity`` ``value`` draws the paired
    fixed-critic score with its shuffled-pair baseline (thin dotted, same colour), ``gap`` the gap (paired -
    shuffled); both are contrast scores, not MI estimates. The InfoNCE ceiling ``log N`` is drawn where it
    does not squash the curves, else given in the panel title. Each row's legend sits outside the panels, so
    it hides no curve.

    ``runs`` are run directories (read with :func:`load_mi_curves`) or loaded curves; ``labels`` name the
    lines (default: the method, with the directory added when two runs share a method).
    """
    from matplotlib.ticker import MaxNLocator

    if not runs:
        raise ValueError("plot_mi needs at least one run")
    if quantity not in ("value", "gap"):
        raise ValueError(f"quantity must be 'value' or 'gap', got {quantity!r}")
    runs = [r if isinstance(r, MICurves) else load_mi_curves(r, representation) for r in runs]
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"got {len(labels)} labels for {len(runs)} runs")
    methods = [r.method for r in runs]
    for i, r in enumerate(runs):  # disambiguate repeated methods (e.g. ablations) by their directory
        r.label = labels[i] if labels is not None else (
            f"{r.method} ({r.source})" if methods.count(r.method) > 1 else r.method)
    estimators = [e for e in BOUNDS if any(e in r.series for r in runs)]
    families = _family_rows(runs)
    styles = dict(zip(map(id, runs), _styles(runs)))
    fig, axes = plt.subplots(len(families), len(estimators), figsize=(4.6 * len(estimators) + 3.2,
                                                                      3.9 * len(families)), squeeze=False)
    what = "contrast score" if quantity == "value" else "contrast, paired - shuffled (not MI)"
    for row, family in enumerate(families):
        members = [r for r in runs if r.paradigm == family]
        for col, est in enumerate(estimators):
            ax = axes[row, col]
            drawn = []
            for run in members:
                if est not in run.series:
                    continue
                style, colour, marker = styles[id(run)]
                mean, spread = run.series[est][quantity]
                every = max(1, len(run.epochs) // 12)
                ax.plot(run.epochs, mean, style, color=colour, marker=marker, ms=4, markevery=every, lw=1.6,
                        label=run.label)
                ax.fill_between(run.epochs, mean - spread, mean + spread, color=colour, alpha=0.12, lw=0)
                drawn.append(mean)
                if quantity == "value":
                    ax.plot(run.epochs, run.series[est]["shuffled"][0], ":", color=colour, lw=1)
                    drawn.append(run.series[est]["shuffled"][0])
            title = f"{FAMILIES.get(family, OTHER_FAMILY)[0].split(' (')[0]}: {est} {what} ({representation})"
            if est == "InfoNCE" and quantity == "value" and drawn:
                off_scale = []
                for log_n in sorted({r.log_n for r in members if r.log_n is not None}):
                    if _ceiling_fits(drawn, log_n):
                        ax.axhline(log_n, color="black", lw=1, ls="-.",
                                   label=f"ceiling log N = {log_n:.2f} (N = {round(math.exp(log_n))})")
                    else:
                        off_scale.append(f"{log_n:.2f}")
                if off_scale:
                    title += f"\nceiling log N = {', '.join(off_scale)} (above the curves)"
            if quantity == "gap":
                ax.axhline(0.0, color="grey", lw=0.8)
            ax.set_title(title, fontsize=9)
            ax.set_ylabel(UNITS.get(est, "estimate"))
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        handles, names = [], []
        for ax in axes[row]:
            for h, n in zip(*ax.get_legend_handles_labels()):
                if n not in names:
                    handles.append(h)
                    names.append(n)
        if quantity == "value":
            handles.append(plt.Line2D([], [], color="black", ls=":", lw=1))
            names.append("shuffled-pair baseline (same colour)")
        axes[row, -1].legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                             frameon=False, title=FAMILIES.get(family, OTHER_FAMILY)[0], title_fontsize=8)
    taus = sorted({r.tau_est for r in runs})
    fig.suptitle(f"Fixed-critic contrast scores on the monitor set ({representation} pairs), cosine critic, "
                 f"τ_est = {', '.join(f'{t:g}' for t in taus)}; mean over seeds, band = sample std")
    fig.tight_layout()
    return fig


# --- accuracy against training time ----------------------------------------------------------------
@dataclass(eq=False)
class AccuracyCurves:
    """One configuration's evaluations over training: per encoder, the training minutes at each evaluated
    epoch and the linear/kNN accuracy (%), means over seeds at the epochs every seed evaluated."""

    method: str
    source: str  # the first directory, for labels when two configurations share a method
    minutes: dict[str, np.ndarray] = field(default_factory=dict)
    accuracy: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # encoder -> metric -> values


def load_accuracy_curves(run_dirs: Sequence[str | Path]) -> AccuracyCurves:
    """Read ``eval.csv`` and ``metrics.csv`` of every seed of ``run_dirs`` (one configuration, :func:`group_runs`;
    other lists are refused). The time of an
    evaluation at epoch e is the training time of epochs 1..e (``epoch_time_s``, evaluation and monitors
    excluded), averaged over the seeds. Raises a one-line ``UserError``."""
    if len(run_dirs) > 1:
        _one_configuration(list(map(Path, run_dirs)))
    seeds, config = [], None
    for d in map(Path, run_dirs):
        found, cfg_file = _seed_dirs(d)
        config = config or cfg_file
        seeds += [s for s in found if s.eval_csv.is_file() and s.metrics_csv.is_file()]
    if not seeds:
        raise UserError(f"{run_dirs[0]}: no seed with eval.csv and metrics.csv (not a finished mimax run?)")
    try:
        method = str(json.loads(config.read_text())["model_name"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{config}: missing or unreadable run config (needs model_name)") from None
    per_seed = []
    for s in seeds:
        try:
            elapsed = np.cumsum([0.0] + [float(r["epoch_time_s"]) for r in read_csv(s.metrics_csv)])
            rows = {(int(r["epoch"]), r["encoder"]): r for r in read_csv(s.eval_csv)}
        except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{s.path}: unreadable eval.csv/metrics.csv ({exc})") from None
        per_seed.append((elapsed, rows))
    keys = sorted(set.intersection(*(set(rows) for _, rows in per_seed)))
    if not keys:
        raise UserError(f"{run_dirs[0]}: eval.csv holds no evaluation"
                        + (" common to its seeds" if any(rows for _, rows in per_seed) else
                           " (a run without labels, --no_labels or --dataset Folder, has no linear probe or kNN)"))
    curves = AccuracyCurves(method=method, source=run_label(Path(run_dirs[0])))
    for encoder in dict.fromkeys(e for _, e in keys):
        epochs = [ep for ep, e in keys if e == encoder and all(ep < len(el) for el, _ in per_seed)]
        curves.minutes[encoder] = np.mean([[el[ep] / 60 for ep in epochs] for el, _ in per_seed], 0)
        curves.accuracy[encoder] = {m: np.mean([[100 * float(rows[(ep, encoder)][m]) for ep in epochs]
                                                for _, rows in per_seed], 0) for m in ("linear", "knn")}
    return curves


def plot_accuracy_vs_time(groups: Sequence[Sequence[str | Path]]) -> Figure:
    """Linear-probe and kNN top-1 against training wall time, one curve per configuration and encoder
    (seeds averaged; the first point, at time 0, is the random init)."""
    curves = [load_accuracy_curves(g) for g in groups]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    i, methods = 0, [c.method for c in curves]
    for c in curves:
        for encoder in c.minutes:
            colour, marker = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
            i += 1
            label = encoder if encoder == c.method or encoder.startswith(c.method) else f"{c.method} ({encoder})"
            label += f" ({c.source})" if methods.count(c.method) > 1 else ""
            for ax, metric in zip(axes, ("linear", "knn")):
                ax.plot(c.minutes[encoder], c.accuracy[encoder][metric], "-", color=colour, marker=marker, ms=5,
                        label=label)
    for ax, title in zip(axes, ("linear probe top-1 (%)", "kNN top-1 (%)")):
        ax.set_xlabel("training wall time (min; evaluations and monitors excluded)")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle("Accuracy against training time (mean over seeds; time 0 = random init)")
    fig.tight_layout()
    return fig


# --- Figure 3 -------------------------------------------------------------------------------------
def _draw_panel(ax: Any, centers: np.ndarray, title: str) -> None:
    """``centers``: (T, K, D) normalized center embeddings over T records."""
    steps, clusters, dim = centers.shape
    colors = plt.get_cmap("tab10")(np.arange(clusters) % 10)
    alphas = np.linspace(0.1, 1.0, max(steps - 1, 1))
    if dim == 2:
        t = np.linspace(0, 2 * math.pi, 200)
        ax.plot(np.cos(t), np.sin(t), color="0.85", lw=1)
        ax.set_aspect("equal")
        ax.set_xlim(-1.15, 1.15)
        ax.set_ylim(-1.15, 1.15)
    else:
        u, v = np.mgrid[0:2 * np.pi:24j, 0:np.pi:12j]
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.9", lw=0.4)
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
        # look at the sphere from the side where the final centers are
        m = centers[-1].mean(0)[:3]
        if np.linalg.norm(m) > 1e-6:
            m = m / np.linalg.norm(m)
            ax.view_init(elev=float(np.degrees(np.arcsin(np.clip(m[2], -1, 1)))),
                         azim=float(np.degrees(np.arctan2(m[1], m[0]))))
    for k in range(clusters):
        path = centers[:, k, :3]
        if steps > 1:  # one collection of the path's segments per cluster (one artist, not one per segment)
            rgba = np.repeat(np.asarray(colors[k])[None], steps - 1, axis=0)
            rgba[:, 3] = alphas[: steps - 1]
            segments = np.stack([path[:-1], path[1:]], axis=1)  # (steps - 1, 2, dim)
            if dim > 2:
                ax.add_collection3d(Line3DCollection(segments, colors=rgba, linewidths=1.8))
            else:
                ax.add_collection(LineCollection(segments, colors=rgba, linewidths=1.8))
        ax.scatter(*path[-1][:, None], color=colors[k], s=30, edgecolors="k", linewidths=0.5, zorder=5)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if dim > 2:
        ax.set_zticks([])


def _trajectories_title(dim: int) -> str:
    """Figure 3's title; for D > 3 it says that the panels draw the first 3 coordinates (a projection, whose
    points lie inside the drawn unit sphere)."""
    title = "Cluster-center embeddings during training (opacity rises with time)"
    if dim > 3:
        title += f"\nD = {dim}: first 3 coordinates shown (a projection: points lie inside the sphere)"
    return title


def plot_trajectories(run_dirs: list[Path], labels: list[str] | None = None, kind: str = "center_embedding"):
    """One panel per run directory (a ``seed_<k>`` folder holding ``trajectories.json``).

    ``kind``: ``center_embedding`` (the encoder applied to the true mean) or ``point_mean_embedding``.
    Returns the matplotlib Figure.
    """
    data = [load_trajectories(Path(d)) for d in run_dirs]
    labels = labels or [d["method"] for d in data]
    panels = []
    for d, traj in zip(run_dirs, data):  # damaged records are one line naming the file, not a crash
        source = SeedDir.at(d).trajectories_json
        try:
            centers = np.array([r[kind] for r in traj["records"]], dtype=float)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: malformed {kind} records ({exc})") from None
        if centers.ndim != 3 or centers.shape[2] < 2:
            raise UserError(f"{source}: {kind} records must be (epochs, clusters, dim >= 2) numbers (got shape "
                            f"{centers.shape})")
        panels.append(centers)
    n = len(data)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    dim = panels[0].shape[2]
    fig = plt.figure(figsize=(3.2 * cols, 3.2 * rows))
    for i, (centers, label) in enumerate(zip(panels, labels)):
        ax = fig.add_subplot(rows, cols, i + 1, **({"projection": "3d"} if dim > 2 else {}))
        _draw_panel(ax, centers, label)
    fig.suptitle(_trajectories_title(dim), fontsize=11)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, out: str | Path, fmt: str, dpi: int = 150) -> Path:
    """Render ``fig`` as ``fmt`` (png, pdf or svg) and write it atomically to ``out``."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise UserError(f"--out: {out} exists and is not a regular file; refusing to replace it")
    if not out.parent.is_dir():
        raise UserError(f"--out: directory {out.parent} does not exist")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    atomic_write_bytes(out, buf.getvalue())
    remove_torn_writes(out)  # what a killed earlier write of this file left beside it
    plt.close(fig)
    return out
