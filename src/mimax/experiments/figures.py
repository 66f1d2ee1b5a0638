"""The paper's Figure 3: cluster-center embeddings over training, one panel per method.

For a 2-D embedding the centers move on the unit circle; for 3-D on the unit sphere (drawn in 3-D axes
with a light wireframe). Each of the K trajectories is drawn with opacity rising with training time, and
its final position is marked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mimax.errors import UserError
from mimax.experiments.trajectories import load_trajectories
from mimax.store.rundir import SeedDir  # noqa: E402


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
        for i in range(steps - 1):
            ax.plot(*path[i:i + 2].T, color=colors[k], alpha=float(alphas[i]), lw=1.8)
        ax.scatter(*path[-1][:, None], color=colors[k], s=30, edgecolors="k", linewidths=0.5, zorder=5)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if dim > 2:
        ax.set_zticks([])


def plot_trajectories(run_dirs: list[Path], labels: list[str] | None = None, kind: str = "center_embedding"):
    """One panel per run directory (a ``seed_<k>`` folder holding ``trajectories.json``).

    ``kind``: ``center_embedding`` (the encoder applied to the true mean) or ``point_mean_embedding``.
    Returns the matplotlib Figure.
    """
    data = [load_trajectories(Path(d)) for d in run_dirs]
    labels = labels or [d["method"] for d in data]
    panels = []
    for d, traj in zip(run_dirs, data):
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
    fig.suptitle("Cluster-center embeddings during training (opacity rises with time)", fontsize=11)
    fig.tight_layout()
    return fig
