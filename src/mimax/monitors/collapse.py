"""Collapse monitors (docs/methods.md §6-7): how spread out the embeddings of the monitor set are.

Two numbers per encoder, every epoch, as extra ``metrics.csv`` columns:

- ``emb_std_<encoder>``: the std over samples of each dimension of the L2-normalized embeddings, averaged
  over dimensions (SimSiam's collapse indicator, Chen & He, 2021, §4.1). 0 under complete collapse;
  about ``1/sqrt(D)`` for embeddings spread uniformly on the sphere (0.707 / 0.577 / 0.354 at D = 2/3/8).
- ``emb_erank_<encoder>``: the effective rank (Roy & Vetterli, 2007, "The effective rank: a measure of
  effective dimensionality") of the covariance of the L2-normalized embeddings. Between 1 and D; 1 when
  the embeddings vary along one direction only (dimensional collapse), D when isotropic; 0 by definition
  under complete collapse (zero covariance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mimax.callbacks import Callback, RunState
from mimax.monitors.base import evaluation_mode
from mimax.naming import ascii_name


def _check_embeddings(z: Tensor) -> None:
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"embeddings must be (N, D) with N >= 2, got shape {tuple(z.shape)}")


def normalized_embedding_std(z: Tensor) -> Tensor:
    """``mean_k std_i( z_ik / ||z_i|| )`` for embeddings ``z`` of shape (N, D) (std with ddof = 1)."""
    _check_embeddings(z)
    return F.normalize(z.double(), dim=1).std(dim=0).mean()


def effective_rank(z: Tensor, eps: float = 1e-12) -> Tensor:
    """Effective rank of the covariance of the L2-normalized embeddings ``z`` (N, D):

    ``erank = exp( -sum_k p_k log p_k )``, ``p_k = lambda_k / sum_j lambda_j``, ``lambda_k`` the eigenvalues
    of ``Cov(z / ||z||)`` (Roy & Vetterli, 2007). Returns 0 when the covariance vanishes (``sum lambda <= eps``).
    """
    _check_embeddings(z)
    zn = F.normalize(z.double(), dim=1)
    eig = torch.linalg.eigvalsh(torch.cov(zn.T).reshape(zn.shape[1], zn.shape[1])).clamp_min(0)
    total = eig.sum()
    if total <= eps:
        return torch.zeros((), dtype=torch.float64)
    p = eig / total
    return torch.exp(-torch.special.xlogy(p, p).sum())


def encoder_embeddings(encoder: torch.nn.Module, x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """The encoder's embeddings (projector outputs) of every row of ``x``, in chunks of ``batch_size``."""
    return torch.cat([encoder(x[i:i + batch_size].to(device)).float() for i in range(0, x.shape[0], batch_size)])


class CollapseMonitor(Callback):
    """Adds ``emb_std_<encoder>`` and ``emb_erank_<encoder>`` to every epoch's ``metrics.csv`` row, computed
    on view A of the fixed monitor set, one column pair per encoder the method exposes (SDMI: f_θ and g_ξ,
    named in ASCII by :func:`mimax.naming.ascii_name`: ``emb_std_f_theta``, ``emb_std_g_xi``)."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def measure(self, state: RunState) -> dict[str, float]:
        if state.data.monitor_views is None:
            return {}
        x = state.data.monitor_views[0]
        out: dict[str, float] = {}
        with evaluation_mode(state.method):
            for key, encoder in state.method.encoders().items():
                z = encoder_embeddings(encoder, x, self.batch_size, state.device)
                out[f"emb_std_{ascii_name(key)}"] = normalized_embedding_std(z).item()
                out[f"emb_erank_{ascii_name(key)}"] = effective_rank(z).item()
        return out

    def on_epoch_end(self, state: RunState) -> dict[str, float]:
        return self.measure(state)
