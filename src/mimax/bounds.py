"""Variational lower bounds on mutual information, as pure functions of a score matrix (docs/methods.md §2).

``S[i, j]`` is a critic's score of the pair (u_i, v_j): the diagonal holds samples of the joint p(u, v),
the off-diagonal samples of the product of marginals p(u)p(v). These functions are the single source of
truth for the math: the training objectives (:mod:`mimax.objectives`) and the MI monitors
(:mod:`mimax.monitors`) both call them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_square(scores: Tensor, name: str = "scores") -> int:
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"{name} must be a square N x N score matrix, got shape {tuple(scores.shape)}")
    n = scores.shape[0]
    if n < 2:
        raise ValueError(f"{name} needs N >= 2 (the marginal term uses off-diagonal pairs), got N = {n}")
    return n


def _off_diagonal(scores: Tensor) -> Tensor:
    """The N(N-1) off-diagonal entries of a square matrix, as a flat vector."""
    n = scores.shape[0]
    return scores.flatten()[1:].view(n - 1, n + 1)[:, :-1].flatten()


def _softplus(x: Tensor) -> Tensor:
    """``softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^{-|x|})`` (exact identity, no overflow).

    Why not ``F.softplus``: on the CPU in fp32 it goes through a scalar ``log1p``, several times slower than
    ``exp`` + ``log`` on the MI monitor's score matrices (``benchmarks/mi_overhead.py`` measures the monitor).
    ``log`` of a number in [1, 2] loses only the relative precision of terms below float32's epsilon, an
    absolute error < 1e-7 per entry.
    """
    return x.clamp_min(0) + torch.log(1 + torch.exp(-x.abs()))


def cosine_scores(u: Tensor, v: Tensor, temperature: float) -> Tensor:
    """Cosine critic: ``S_ij = cos(u_i, v_j) / tau`` for embeddings ``u, v`` of shape (N, D)."""
    if u.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"u and v must both be (N, D) with equal shapes, got {tuple(u.shape)} and {tuple(v.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.normalize(u, dim=1) @ F.normalize(v, dim=1).T / temperature


def dv_joint_term(scores: Tensor) -> Tensor:
    """Joint term of the DV bound: ``mean_i S_ii``."""
    _check_square(scores)
    return scores.diagonal().mean()


def dv_marginal_term(scores: Tensor) -> Tensor:
    """Marginal term of the DV bound: ``log( 1/(N(N-1)) sum_{i != j} exp(S_ij) )``, via logsumexp."""
    n = _check_square(scores)
    return torch.logsumexp(_off_diagonal(scores), dim=0) - math.log(n * (n - 1))


def dv_bound(scores: Tensor) -> Tensor:
    """Donsker-Varadhan bound: ``I_DV(S) = mean_i S_ii - log( 1/(N(N-1)) sum_{i != j} exp(S_ij) )``.

    Transpose-invariant: ``I_DV(S) == I_DV(S.T)``. Zero for a constant matrix (a collapsed batch).
    """
    return dv_joint_term(scores) - dv_marginal_term(scores)


def infonce_bound(scores: Tensor) -> Tensor:
    """InfoNCE bound: ``I_NCE(S) = log N + mean_i (S_ii - logsumexp_j S_ij)``; never exceeds ``log N``."""
    n = _check_square(scores)
    return math.log(n) + (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean()


def jsd_bound(scores: Tensor) -> Tensor:
    """Jensen-Shannon (Deep InfoMax) score:
    ``I_JSD(S) = mean_i(-softplus(-S_ii)) - 1/(N(N-1)) sum_{i != j} softplus(S_ij)``.

    A dependence score monotone in the JS divergence between joint and product of marginals, not nats.
    Under collapse (constant S = c) it equals ``-softplus(-c) - softplus(c)``.
    """
    _check_square(scores)
    return (-_softplus(-scores.diagonal())).mean() - _softplus(_off_diagonal(scores)).mean()


BOUNDS = {"cos-DV": dv_bound, "InfoNCE": infonce_bound, "JSD": jsd_bound}
