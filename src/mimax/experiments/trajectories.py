"""Cluster-center trajectories and separation on the Gaussian mixture (docs/methods.md §7; the paper's Figure 3).

After every epoch (and before the first step) :class:`TrajectoryRecorder` records, for every cluster,
the normalized embedding of the true mean (the encoder applied to mu_k) and the normalized mean of the
normalized embeddings of the cluster's test points. It writes ``trajectories.json`` atomically with every
checkpoint and at the end, so the figure can be redrawn later from the run folder
(``mimax plot trajectories RUN_DIR ...``) and a resumed run continues the records of its checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mimax.callbacks import Callback, RunState
from mimax.errors import UserError
from mimax.monitors.collapse import normalized_embedding_std
from mimax.store.atomic import write_json
from mimax.store.rundir import SeedDir


def separation(embeddings: Tensor, labels: Tensor) -> dict[str, float]:
    """Separation of clusters on the unit sphere, as three numbers (docs/methods.md §7):

    - ``min_center_angle``: the smallest angle (radians) between two cluster centers, a center being the
      normalized mean of the cluster's normalized embeddings;
    - ``within_spread``: the mean angle between each point's normalized embedding and its cluster center;
    - ``ratio`` = min_center_angle / within_spread (large = distinct, tight clusters).
    """
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"need (N, D) embeddings and (N,) labels, got {tuple(embeddings.shape)} and "
                         f"{tuple(labels.shape)}")
    z = F.normalize(embeddings.double(), dim=1)
    classes = labels.unique()
    if len(classes) < 2:
        raise ValueError("separation needs at least two clusters")
    centers = torch.stack([F.normalize(z[labels == c].mean(0), dim=0) for c in classes])
    cos = (centers @ centers.T).clamp(-1, 1)
    iu = torch.triu_indices(len(classes), len(classes), offset=1)
    min_angle = torch.acos(cos[iu[0], iu[1]]).min().item()
    index = torch.searchsorted(classes, labels)
    spread = torch.acos((z * centers[index]).sum(1).clamp(-1, 1)).mean().item()
    return {"min_center_angle": min_angle, "within_spread": spread,
            "ratio": min_angle / spread if spread > 0 else math.inf}


class TrajectoryRecorder(Callback):
    """Records cluster-center embeddings of the method's first encoder (SDMI: f_θ) every epoch."""

    def __init__(self, run_dir: Path):
        self.path = SeedDir.at(run_dir).trajectories_json
        self.records: list[dict[str, Any]] = []

    @torch.no_grad()
    def _record(self, state: RunState) -> None:
        encoder = next(iter(state.method.encoders().values()))
        was_training = encoder.training
        encoder.eval()
        try:
            means = state.data.extras["cluster_means"].to(state.device)
            x, y = state.data.extras["test_inputs"].to(state.device), state.data.extras["test_labels"]
            z = F.normalize(encoder(x).float(), dim=1).cpu()
            point_means = torch.stack([F.normalize(z[y == k].mean(0), dim=0) for k in range(len(means))])
            self.records.append({
                "epoch": state.epoch,
                "center_embedding": F.normalize(encoder(means).float(), dim=1).cpu().tolist(),
                "point_mean_embedding": point_means.tolist(),
                **separation(z, y),
                "normalized_std": normalized_embedding_std(z).item(),
            })
        finally:
            encoder.train(was_training)

    def _write(self, state: RunState) -> None:
        """Every record so far, compact. Written with every checkpoint (what a resumed run reads back) and at
        the end: rewriting it after every epoch cost ~3 ms per epoch (growing JSON, fsync) for nothing."""
        write_json(self.path, {"method": state.cfg.model_name, "records": self.records}, indent=None)

    def before_checkpoint(self, state: RunState) -> None:
        self._write(state)

    def on_train_end(self, state: RunState) -> None:
        self._write(state)

    def on_train_start(self, state: RunState) -> None:
        self.records = []
        self._record(state)

    def on_epoch_end(self, state: RunState) -> dict[str, float]:
        if not self.records and self.path.is_file():  # resumed: keep the epochs up to the checkpoint
            saved = load_trajectories(self.path.parent)["records"]
            self.records = [r for r in saved if r["epoch"] < state.epoch]
        self._record(state)
        last = self.records[-1]
        return {"sep_min_center_angle": last["min_center_angle"], "sep_within_spread": last["within_spread"],
                "sep_ratio": last["ratio"]}


def load_trajectories(run_dir: Path) -> dict[str, Any]:
    """``trajectories.json`` of a seed directory: ``{"method": str, "records": [{"epoch": int, ...}, ...]}``
    (a one-line UserError if it is missing, unreadable or not that shape)."""
    path = SeedDir.at(run_dir).trajectories_json
    if not path.is_file():
        raise UserError(f"{path}: no trajectories recorded; `mimax demo` records the cluster-center trajectories "
                        f"(Figure 3) of its runs, `mimax train` does not")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({' '.join(str(exc).split())[:120]})") from None
    ok = (isinstance(data, dict) and isinstance(data.get("method"), str) and isinstance(data.get("records"), list)
          and data["records"] and all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in data["records"]))
    if not ok:
        raise UserError(f"{path}: not a mimax trajectories file (expected method and a list of epoch records)")
    return data
