"""MI monitor (docs/methods.md §6): fixed-critic contrast scores of :mod:`mimax.bounds` on a fixed monitor set
during training, each with its shuffled-pair baseline; the trained-critic MI estimate
(:func:`mimax.monitors.estimators.estimate_mi`) with its interval; and the two-view geometry monitors
(LiDAR, alignment, uniformity). Schema and caveats: docs/monitoring.md.

For every representation the method pairs (``method.monitor_pairs``: ``"embedding"``, ``"backbone"``, ...)
and every batch of N pairs of the monitor set, one cosine score matrix ``S_ij = cos(u_i, v_j) / tau_est``
is scored by every bound in :data:`mimax.bounds.BOUNDS`, twice:

- paired: ``I(S)``, the true pairing (u_i, v_i);
- shuffled: ``I(S P)``, the same embeddings with v's rows permuted by a fixed derangement P, i.e. samples
  of the product of marginals only. This is the score's independence value for these embeddings;
- gap: paired - shuffled, a contrast score (0 both for collapse and for independence).

With a fixed critic (cosine, ``--mi_temperature``) these are *scores* that compare epochs and methods on one
scale, not MI estimates and not bounds on the MI of the representations: the gap can exceed the MI (it
subtracts a negative baseline) and is no lower bound. The MI itself is estimated by the trained critic.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mimax.bounds import BOUNDS, bound_values, cosine_scores
from mimax.callbacks import Callback, RunState
from mimax.monitors.base import evaluation_mode, finite_embeddings, monitor_batch_size, monitor_batches, run_dtype
from mimax.monitors.collapse import normalized_embedding_std
from mimax.monitors.estimators import estimate_mi
from mimax.monitors.rank import geometry, unit_rows
from mimax.naming import ascii_name
from mimax.runtime.device import autocast_to
from mimax.seeding import SHUFFLE_SEED  # the shuffled baseline: one permutation for every run and epoch
from mimax.store.atomic import read_csv, write_csv
from mimax.store.memo import recall
from mimax.store.rundir import SeedDir

MI_CSV_COLUMNS = ["epoch", "step", "representation", "estimator", "value", "shuffled", "gap", "log_n",
                  "batch_size", "num_batches", "tau_est", "std_u", "std_v", "ci_low", "ci_high"]


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
    counterpart ``S' = cosine_scores(u, v[perm], temperature) = S[:, perm]``, both from one pass over ``S``
    (:func:`mimax.bounds.bound_values`). The rows are scaled to unit length in float64 first
    (:func:`~mimax.monitors.rank.unit_rows`), so that embeddings beyond float32's range score as their directions."""
    paired, shuffled = bound_values(cosine_scores(unit_rows(u).float(), unit_rows(v).float(), temperature), perm)
    return {name: (paired[name], shuffled[name]) for name in BOUNDS}


def monitor_embeddings(method: torch.nn.Module, x_a: Tensor, x_b: Tensor, batch_size: int,
                       device: torch.device, dtype: torch.dtype | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """``{representation: (U, V)}``: ``method.monitor_pairs`` on consecutive full batches of the monitor set
    (:func:`monitor_batches`), concatenated in fp32, in eval mode under ``no_grad`` (modules' modes
    restored), under autocast to ``dtype`` when given (the run's precision)."""
    n = monitor_batch_size(x_a.shape[0], batch_size)
    out: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
    with evaluation_mode(method), autocast_to(device, dtype):
        for xa, xb in monitor_batches(x_a, x_b, n, device):
            for rep, (u, v) in method.monitor_pairs(xa, xb).items():
                us, vs = out.setdefault(rep, ([], []))
                us.append(u.float())
                vs.append(v.float())
    return {rep: (torch.cat(us), torch.cat(vs)) for rep, (us, vs) in out.items()}


def fixed_critic_rows(pairs: dict[str, tuple[Tensor, Tensor]], batch_size: int,
                      temperature: float) -> list[dict[str, Any]]:
    """One row per (representation, score): the fixed-critic score of every bound, paired and shuffled,
    averaged over consecutive batches of N = ``batch_size`` pairs, the gap, the InfoNCE ceiling ``log N``,
    and the normalized-embedding std of each side (``std_u``, ``std_v``)."""
    rows = []
    for rep, (u_all, v_all) in pairs.items():
        n = monitor_batch_size(u_all.shape[0], batch_size)
        perm = derangement(n)
        per_est: dict[str, list[Tensor]] = {}
        for start in range(0, u_all.shape[0] - n + 1, n):
            for est, pair in paired_and_shuffled(u_all[start:start + n], v_all[start:start + n], temperature,
                                                 perm).items():
                per_est.setdefault(est, []).append(torch.stack(pair))
        std_u, std_v = normalized_embedding_std(u_all).item(), normalized_embedding_std(v_all).item()
        for est, per_batch in per_est.items():
            value, base = torch.stack(per_batch).mean(0).tolist()
            rows.append({"representation": rep, "estimator": est, "value": value, "shuffled": base,
                         "gap": value - base, "log_n": math.log(n) if est == "InfoNCE" else "",
                         "batch_size": n, "num_batches": len(per_batch), "tau_est": temperature,
                         "std_u": std_u, "std_v": std_v})
    return rows


def fixed_critic_scores(method: torch.nn.Module, x_a: Tensor, x_b: Tensor, batch_size: int, temperature: float,
                        device: torch.device) -> list[dict[str, Any]]:
    """:func:`fixed_critic_rows` of the method's monitor pairs on the monitor set ``(x_a, x_b)``."""
    return fixed_critic_rows(monitor_embeddings(method, x_a, x_b, batch_size, device), batch_size, temperature)


CRITIC_REPRESENTATIONS = ("embedding", "backbone")
CRITIC_ESTIMATOR = "critic-InfoNCE"


def _critic_row(rep: str, u: Tensor, v: Tensor, options: dict[str, Any]) -> dict[str, Any]:
    est = estimate_mi(u.cpu(), v.cpu(), **options)
    return {"representation": rep, "estimator": CRITIC_ESTIMATOR, "value": est.mi, "shuffled": "",
            "gap": "", "log_n": est.log_n, "batch_size": est.batch_size,
            "num_batches": est.n_test // est.batch_size, "tau_est": "",
            "std_u": normalized_embedding_std(u).item(), "std_v": normalized_embedding_std(v).item(),
            "ci_low": est.ci[0], "ci_high": est.ci[1]}


def trained_critic_rows(pairs: dict[str, tuple[Tensor, Tensor]],
                        representations: tuple[str, ...] = CRITIC_REPRESENTATIONS, cache: Path | None = None,
                        **critic_options: Any) -> list[dict[str, Any]]:
    """One ``critic-InfoNCE`` row per representation: the held-out trained-critic InfoNCE estimate of
    :func:`mimax.monitors.estimators.estimate_mi` (nats; ``critic_options`` passed on) with its 95% interval
    (``ci_low``, ``ci_high``).

    ``cache``: a folder of rows keyed by both matrices and the options (:mod:`mimax.store.memo`). A pair
    already estimated there with the same options (e.g. by another run whose networks start from the same
    initialization) is read back instead of fitted again; the estimator draws from its own seeded generators
    only, so on the same machine and thread count the row is the one the fit would give. New rows are written
    atomically, so concurrent runs may share the folder."""
    options = {"bound": "infonce", "seed": 0, **critic_options}
    rows = []
    for rep in representations:
        if rep not in pairs or pairs[rep][0].shape[0] < 16:
            continue
        u, v = pairs[rep]
        row = recall(cache, (u, v), options, lambda u=u, v=v, rep=rep: _critic_row(rep, u, v, options))
        rows.append({**row, "representation": rep})
    return rows


def geometry_values(pairs: dict[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
    """``lidar_<rep>``, ``alignment_<rep>``, ``uniformity_<rep>`` (:func:`mimax.monitors.rank.geometry`) for
    every representation whose two sides have the same width."""
    out = {}
    for rep, (u, v) in pairs.items():
        if u.shape == v.shape:
            out.update({f"{name}_{ascii_name(rep)}": value for name, value in geometry(u, v).items()})
    return out


class MIMonitor(Callback):
    """Writes ``run_dir/mi.csv`` (atomically, after every measurement): fixed-critic scores before the first
    step (epoch 0, step 0), every ``interval`` epochs and at the last epoch; the trained-critic estimate at
    epoch 0, the last epoch and every ``critic_interval`` epochs (0: first and last only, -1: never). At the
    epochs it measures (>= 1) it also returns the geometry monitors and the trained-critic estimate as
    ``metrics.csv`` columns. On resume, rows past the resumed epoch are dropped. ``critic_cache``: a folder
    shared by runs whose trained-critic estimates may coincide (:func:`trained_critic_rows`)."""

    def __init__(self, run_dir: Path, interval: int, batch_size: int, temperature: float, epochs: int,
                 critic_interval: int = 0, critic_representations: tuple[str, ...] = CRITIC_REPRESENTATIONS,
                 critic_options: dict[str, Any] | None = None, representations: tuple[str, ...] | None = None,
                 critic_cache: Path | None = None):
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if critic_interval < -1:
            raise ValueError(f"critic_interval must be >= -1, got {critic_interval}")
        self.path = SeedDir.at(run_dir).mi_csv
        self.interval, self.batch_size, self.temperature, self.epochs = interval, batch_size, temperature, epochs
        self.critic_interval = critic_interval
        self.critic_representations, self.critic_options = critic_representations, dict(critic_options or {})
        self.representations = representations  # None: every pair the method monitors
        self.critic_cache = critic_cache  # trained_critic_rows' cache folder (None: every estimate is fitted)
        self.rows: list[dict[str, Any]] | None = None  # None until started or resumed

    def _critic_due(self, epoch: int) -> bool:
        if self.critic_interval < 0:
            return False
        return epoch in (0, self.epochs) or (self.critic_interval > 0 and epoch % self.critic_interval == 0)

    def _record(self, state: RunState, fixed: bool, critic: bool) -> dict[str, float]:
        if state.data.monitor_views is None:
            return {}
        x_a, x_b = state.data.monitor_views
        pairs = monitor_embeddings(state.method, x_a, x_b, self.batch_size, state.device, run_dtype(state.cfg))
        if self.representations is not None:
            pairs = {k: v for k, v in pairs.items() if k in self.representations}
        for rep, (u, v) in pairs.items():
            for z in (u, v):
                finite_embeddings(z, f"{rep} pairs")
        new = fixed_critic_rows(pairs, self.batch_size, self.temperature) if fixed else []
        new += (trained_critic_rows(pairs, self.critic_representations, self.critic_cache, **self.critic_options)
                if critic else [])
        latest = [{"epoch": state.epoch, "step": state.step, **row} for row in new]
        self.rows += latest
        state.extra["mi"] = latest  # this epoch's rows, for the epoch's printed line and TensorBoard
        write_csv(self.path, [{k: r.get(k, "") for k in MI_CSV_COLUMNS} for r in self.rows])
        out = geometry_values(pairs)
        for row in new:
            if row["estimator"] == CRITIC_ESTIMATOR:
                rep = ascii_name(row["representation"])
                out.update({f"mi_critic_{rep}": row["value"], f"mi_critic_{rep}_low": row["ci_low"],
                            f"mi_critic_{rep}_high": row["ci_high"]})
        return out

    def on_train_start(self, state: RunState) -> None:
        self.rows = []
        if state.data.monitor_views is None:
            warnings.warn(f"MI monitor: dataset {state.data.name} provides no monitor set; {self.path} is not "
                          "written", stacklevel=2)
        self._record(state, fixed=True, critic=self._critic_due(0))

    def on_epoch_end(self, state: RunState) -> dict[str, float]:
        if self.rows is None:  # resumed: keep what was recorded up to the checkpoint's epoch
            self.rows = [r for r in read_csv(self.path) if int(r["epoch"]) < state.epoch]
        fixed = state.epoch % self.interval == 0 or state.epoch == self.epochs
        critic = self._critic_due(state.epoch)
        return self._record(state, fixed, critic) if fixed or critic else {}
