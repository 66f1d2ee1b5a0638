"""MI monitor (docs/methods.md §6): the bounds of :mod:`mimax.bounds` estimated on a fixed monitor set during
training, each with its shuffled-pair baseline and the MI gap. Schema and caveats: docs/monitoring.md.

For every representation the method pairs (``method.monitor_pairs``: ``"embedding"``, ``"backbone"``, ...)
and every batch of N pairs of the monitor set, one cosine score matrix ``S_ij = cos(u_i, v_j) / tau_est``
is scored by every bound in :data:`mimax.bounds.BOUNDS`, twice:

- paired: ``I(S)``, the true pairing (u_i, v_i);
- shuffled: ``I(S P)``, the same embeddings with v's rows permuted by a fixed derangement P, i.e. samples
  of the product of marginals only. This is the estimator's independence value for these embeddings;
- gap: paired - shuffled, the headline number (0 both for collapse and for independence).

Estimates are averaged over the batches. The critic is fixed (cosine, ``--mi_temperature``), not
trained: the numbers are lower bounds that compare across methods and epochs, not the MI itself.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mimax.bounds import BOUNDS, cosine_scores
from mimax.callbacks import Callback, RunState
from mimax.monitors.base import evaluation_mode, monitor_batch_size, monitor_batches
from mimax.monitors.collapse import normalized_embedding_std
from mimax.seeding import SHUFFLE_SEED  # the shuffled baseline: one permutation for every run and epoch
from mimax.store.atomic import read_csv, write_csv
from mimax.store.rundir import SeedDir

MI_CSV_COLUMNS = ["epoch", "step", "representation", "estimator", "value", "shuffled", "gap", "log_n",
                  "batch_size", "num_batches", "tau_est", "std_u", "std_v"]


def derangement(n: int, seed: int = SHUFFLE_SEED) -> Tensor:
    """A random permutation of ``range(n)`` without fixed points (one n-cycle through a random order), drawn
    from its own generator: the global RNG is untouched. ``v[perm]`` re-pairs every u_i with another v."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


def paired_and_shuffled(u: Tensor, v: Tensor, temperature: float, perm: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """``{estimator: (I(S), I(S'))}`` for ``S = cosine_scores(u, v, temperature)`` and its shuffled-pair
    counterpart ``S' = cosine_scores(u, v[perm], temperature) = S[:, perm]`` (a second product of the
    small (N, D) inputs is cheaper than gathering the columns of the N x N matrix)."""
    u, v = u.float(), v.float()
    scores = cosine_scores(u, v, temperature)
    shuffled = cosine_scores(u, v[perm.to(v.device)], temperature)
    return {name: (bound(scores), bound(shuffled)) for name, bound in BOUNDS.items()}


def estimate_mi(method: torch.nn.Module, x_a: Tensor, x_b: Tensor, batch_size: int, temperature: float,
                device: torch.device) -> list[dict[str, Any]]:
    """One row per (representation, estimator): batch-averaged paired and shuffled estimates, the gap, the
    InfoNCE ceiling ``log N``, and the normalized-embedding std of each side (``std_u``, ``std_v``).

    Runs ``method.monitor_pairs`` in eval mode under ``no_grad`` and restores the modules' modes after.
    """
    n = monitor_batch_size(x_a.shape[0], batch_size)
    perm = derangement(n)
    estimates: dict[tuple[str, str], list[Tensor]] = {}  # (representation, estimator) -> [paired, shuffled]
    embeddings: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
    with evaluation_mode(method):
        for xa, xb in monitor_batches(x_a, x_b, n, device):
            for rep, (u, v) in method.monitor_pairs(xa, xb).items():
                us, vs = embeddings.setdefault(rep, ([], []))
                us.append(u.float())
                vs.append(v.float())
                for est, pair in paired_and_shuffled(u, v, temperature, perm).items():
                    estimates.setdefault((rep, est), []).append(torch.stack(pair))
    stds = {rep: (normalized_embedding_std(torch.cat(us)).item(), normalized_embedding_std(torch.cat(vs)).item())
            for rep, (us, vs) in embeddings.items()}
    rows = []
    for (rep, est), per_batch in estimates.items():
        value, base = torch.stack(per_batch).mean(0).tolist()
        rows.append({"representation": rep, "estimator": est, "value": value, "shuffled": base,
                     "gap": value - base, "log_n": math.log(n) if est == "InfoNCE" else "",
                     "batch_size": n, "num_batches": len(per_batch), "tau_est": temperature,
                     "std_u": stds[rep][0], "std_v": stds[rep][1]})
    return rows


class MIMonitor(Callback):
    """Writes ``run_dir/mi.csv`` (atomically, after every estimate): before the first step (epoch 0, step 0),
    every ``interval`` epochs and at the last epoch. On resume, rows past the resumed epoch are dropped."""

    def __init__(self, run_dir: Path, interval: int, batch_size: int, temperature: float, epochs: int):
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.path = SeedDir.at(run_dir).mi_csv
        self.interval, self.batch_size, self.temperature, self.epochs = interval, batch_size, temperature, epochs
        self.rows: list[dict[str, Any]] | None = None  # None until started or resumed

    def _record(self, state: RunState) -> None:
        if state.data.monitor_views is None:
            return
        x_a, x_b = state.data.monitor_views
        latest = [{"epoch": state.epoch, "step": state.step, **row}
                  for row in estimate_mi(state.method, x_a, x_b, self.batch_size, self.temperature, state.device)]
        self.rows += latest
        state.extra["mi"] = latest  # this epoch's estimates, for the epoch's printed line and TensorBoard
        write_csv(self.path, [{k: r[k] for k in MI_CSV_COLUMNS} for r in self.rows])

    def on_train_start(self, state: RunState) -> None:
        self.rows = []
        if state.data.monitor_views is None:
            warnings.warn(f"MI monitor: dataset {state.data.name} provides no monitor set; {self.path} is not "
                          "written", stacklevel=2)
        self._record(state)

    def on_epoch_end(self, state: RunState) -> dict[str, float]:
        if self.rows is None:  # resumed: keep what was recorded up to the checkpoint's epoch
            self.rows = [r for r in read_csv(self.path) if int(r["epoch"]) < state.epoch]
        if state.epoch % self.interval == 0 or state.epoch == self.epochs:
            self._record(state)
        return {}
