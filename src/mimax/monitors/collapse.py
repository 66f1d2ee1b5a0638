"""Collapse monitors (docs/methods.md §6-7): how spread out the embeddings of the monitor set are.

Two numbers per encoder, every epoch, as extra ``metrics.csv`` columns:

- ``emb_std_<encoder>``: the std over samples of each dimension of the L2-normalized embeddings, averaged
  over dimensions (SimSiam's collapse indicator, Chen & He, 2021, §4.1). 0 under complete collapse;
  about ``1/sqrt(D)`` for embeddings spread uniformly on the sphere (0.707 / 0.577 / 0.354 at D = 2/3/8).
- ``emb_erank_<encoder>``: the effective rank (Roy & Vetterli, 2007, "The effective rank: a measure of
  effective dimensionality") of the covariance of the L2-normalized embeddings. Between 1 and D; 1 when
  the embeddings vary along one direction only (dimensional collapse), D when isotropic; 0 by definition
  under complete collapse (zero covariance).
- ``rankme_<encoder>`` and ``alpha_req_<encoder>``: RankMe (Garrido et al., 2023) and alpha-ReQ (Agrawal et
  al., 2022) of the raw embeddings, :mod:`mimax.monitors.rank`.

A run is *collapsed* at an epoch when, for some encoder, ``emb_std < COLLAPSE_STD`` (complete collapse) or
``emb_erank < COLLAPSE_ERANK`` (dimensional collapse); ``--stop_on_collapse N`` ends a run after N
consecutive collapsed epochs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mimax.callbacks import Callback, RunState
from mimax.monitors.base import evaluation_mode, finite_embeddings, run_dtype
from mimax.monitors.rank import spectrum, unit_rows
from mimax.naming import ascii_name
from mimax.runtime.device import autocast_to

# Complete collapse when the std of the L2-normalized embeddings falls below 0.1 (uniform on the sphere
# gives 1/sqrt(D): 0.577 at D = 3); dimensional collapse when the effective rank falls below 1.2.
COLLAPSE_STD = 0.1
COLLAPSE_ERANK = 1.2


def is_collapsed(std: float, erank: float) -> bool:
    """The collapse criterion: ``std < COLLAPSE_STD or erank < COLLAPSE_ERANK``."""
    return std < COLLAPSE_STD or erank < COLLAPSE_ERANK


def _check_embeddings(z: Tensor) -> None:
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"embeddings must be (N, D) with N >= 2, got shape {tuple(z.shape)}")


def normalized_embedding_std(z: Tensor) -> Tensor:
    """``mean_k std_i( z_ik / ||z_i|| )`` for embeddings ``z`` of shape (N, D) (std with ddof = 1)."""
    _check_embeddings(z)
    return unit_rows(z).std(dim=0).mean()


def effective_rank(z: Tensor, eps: float = 1e-12) -> Tensor:
    """Effective rank of the covariance of the L2-normalized embeddings ``z`` (N, D):

    ``erank = exp( -sum_k p_k log p_k )``, ``p_k = lambda_k / sum_j lambda_j``, ``lambda_k`` the eigenvalues
    of ``Cov(z / ||z||)`` (Roy & Vetterli, 2007). Returns 0 when the covariance vanishes (``sum lambda <= eps``),
    NaN when the eigensolver fails on a degenerate matrix.
    """
    _check_embeddings(z)
    zn = unit_rows(z)
    try:
        eig = torch.linalg.eigvalsh(torch.cov(zn.T).reshape(zn.shape[1], zn.shape[1])).clamp_min(0)
    except torch.linalg.LinAlgError:  # LAPACK gave up on a degenerate (e.g. diverged) embedding: no value
        return torch.tensor(float("nan"), dtype=torch.float64)
    total = eig.sum()
    if total <= eps:
        return torch.zeros((), dtype=torch.float64)
    p = eig / total
    return torch.exp(-torch.special.xlogy(p, p).sum())


def encoder_embeddings(encoder: torch.nn.Module, x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """The encoder's embeddings (projector outputs) of every row of ``x``, in chunks of ``batch_size``."""
    return torch.cat([encoder(x[i:i + batch_size].to(device)).float() for i in range(0, x.shape[0], batch_size)])


class CollapseMonitor(Callback):
    """Adds ``emb_std_<encoder>``, ``emb_erank_<encoder>``, ``rankme_<encoder>`` and ``alpha_req_<encoder>`` to
    every epoch's ``metrics.csv`` row, computed on view A of the fixed monitor set, for every encoder the
    method exposes (SDMI: f_θ and g_ξ, named in ASCII by :func:`mimax.naming.ascii_name`: ``emb_std_f_theta``,
    ``emb_std_g_xi``). With ``stop_on_collapse = N > 0`` it asks the loop to end the run once the collapse
    criterion has held for N consecutive epochs (counted from the session's start). ``interval = k > 1``
    measures only every k-th epoch and the last one (``mimax demo``, whose report reads the last epoch's
    values; not with ``stop_on_collapse``, which counts consecutive epochs)."""

    def __init__(self, batch_size: int, stop_on_collapse: int = 0, interval: int = 1):
        if stop_on_collapse < 0:
            raise ValueError(f"stop_on_collapse must be >= 0, got {stop_on_collapse}")
        if interval < 1 or (interval > 1 and stop_on_collapse):
            raise ValueError(f"interval must be >= 1, and 1 with stop_on_collapse (got {interval})")
        self.batch_size = batch_size
        self.stop_on_collapse = stop_on_collapse
        self.interval = interval
        self.collapsed_epochs = 0

    def measure(self, state: RunState) -> dict[str, float]:
        if state.data.monitor_views is None:
            return {}
        x = state.data.monitor_views[0]
        out: dict[str, float] = {}
        with evaluation_mode(state.method), autocast_to(state.device, run_dtype(state.cfg)):
            for key, encoder in state.method.encoders().items():
                z = finite_embeddings(encoder_embeddings(encoder, x, self.batch_size, state.device),
                                      f"embeddings of encoder {key}")
                key = ascii_name(key)
                out[f"emb_std_{key}"] = normalized_embedding_std(z).item()
                out[f"emb_erank_{key}"] = effective_rank(z).item()
                out.update({f"{name}_{key}": value for name, value in spectrum(z).items()})
        return out

    def on_epoch_end(self, state: RunState) -> dict[str, float]:
        if state.epoch % self.interval and state.epoch != state.cfg.epochs:
            return {}
        out = self.measure(state)
        keys = [k[len("emb_std_"):] for k in out if k.startswith("emb_std_")]
        collapsed = [k for k in keys if is_collapsed(out[f"emb_std_{k}"], out[f"emb_erank_{k}"])]
        self.collapsed_epochs = self.collapsed_epochs + 1 if collapsed else 0
        if self.stop_on_collapse and self.collapsed_epochs >= self.stop_on_collapse:
            k = collapsed[0]
            std, erank = out[f"emb_std_{k}"], out[f"emb_erank_{k}"]
            why = [f"normalized-embedding std {std:.3g} < {COLLAPSE_STD}"] if std < COLLAPSE_STD else []
            why += [f"effective rank {erank:.3g} < {COLLAPSE_ERANK}"] if erank < COLLAPSE_ERANK else []
            state.stop_reason = (f"collapse at epoch {state.epoch}: encoder {k} has {' and '.join(why)}, "
                                 f"collapsed for {self.collapsed_epochs} consecutive epochs (--stop_on_collapse "
                                 f"{self.stop_on_collapse})")
        return out
