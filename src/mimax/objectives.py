"""Training objectives (docs/methods.md §4), each a pure function of two batches of embeddings.

Every objective returns a dict of named scalar tensors: ``"loss"`` is what the optimizer minimizes, the
other entries are its terms, logged per epoch in ``metrics.csv``. Objectives compute in fp32 whatever
the autocast precision of the encoder (``_fp32``), and the MI-based ones are built on :mod:`mimax.bounds`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mimax.bounds import cosine_scores, dv_joint_term, dv_marginal_term, infonce_bound, pair_products

LossTerms = dict[str, Tensor]


def _pair(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    if u.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"embeddings must be two (N, D) tensors of equal shape, got {tuple(u.shape)} and "
                         f"{tuple(v.shape)}")
    if u.shape[0] < 2:
        raise ValueError(f"a batch needs N >= 2 pairs, got N = {u.shape[0]}")
    return u.float(), v.float()


def dv_objective(u: Tensor, v: Tensor, temperature: float, marginal: bool = True) -> LossTerms:
    """Negative cosine-critic DV bound: ``loss = -I_DV(S)``, ``S_ij = cos(u_i, v_j) / tau``.

    ``I_DV(S) = mean_i S_ii - log(1/(N(N-1)) sum_{i != j} exp(S_ij))``. With ``marginal=False`` (the
    ``--no_marginal`` ablation) only the joint term is maximized: ``loss = -mean_i S_ii``.
    """
    u, v = _pair(u, v)
    scores = cosine_scores(u, v, temperature)
    joint = dv_joint_term(scores)
    marg = dv_marginal_term(scores)
    loss = -(joint - marg) if marginal else -joint
    return {"loss": loss, "joint": joint.detach(), "marginal": marg.detach()}


def jmi_objective(u: Tensor, v: Tensor, temperature: float, marginal: bool = True) -> LossTerms:
    """JMI prototype: maximize ``(I_DV(S) + I_DV(S^T)) / 2`` with ``S`` from one shared encoder.

    The symmetrization is exact but a no-op for DV (the diagonal mean and the off-diagonal sum are
    transpose-invariant), so it reduces to :func:`dv_objective`; the formula is kept for the paper's
    statement of the view swap A <-> B.
    """
    return dv_objective(u, v, temperature, marginal)


def nt_xent_loss(u: Tensor, v: Tensor, temperature: float) -> LossTerms:
    """SimCLR's NT-Xent over the 2N views (Chen et al., 2020, eq. 1):

    ``l(i, j) = -log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )``, s = cosine similarity, averaged
    over all 2N anchors, each anchor's positive being the other view of the same input.
    """
    u, v = _pair(u, v)
    n = u.shape[0]
    z = F.normalize(torch.cat([u, v]), dim=1)
    logits = pair_products(z * (1.0 / temperature), z)  # 1/tau on the (2N, D) side, not on the (2N, 2N) logits
    logits.fill_diagonal_(float("-inf"))  # k != i; in place: the product keeps its inputs, not its output
    targets = torch.arange(2 * n, device=z.device).roll(n)  # anchor i's positive: i + N for view A, i - N for B
    loss = F.cross_entropy(logits, targets)
    return {"loss": loss}


def mean_cosine(p: Tensor, z: Tensor) -> Tensor:
    """``mean_i cos(p_i, z_i)``: the joint term of the cosine-critic DV bound at tau = 1 (the diagonal
    of :func:`mimax.bounds.cosine_scores`), computed without the N x N matrix."""
    p, z = _pair(p, z)
    return F.cosine_similarity(p, z, dim=1).mean()


def byol_loss(p: Tensor, z: Tensor) -> LossTerms:
    """BYOL (Grill et al., 2020, eq. 2): ``loss = 2 - 2 mean_i cos(q(u_i), v_i)``, ``v`` the target's
    embedding (the caller passes it detached). Joint term only: no marginal term."""
    cos = mean_cosine(p, z)
    return {"loss": 2 - 2 * cos, "cosine": cos.detach()}


def simsiam_loss(p: Tensor, z: Tensor) -> LossTerms:
    """SimSiam (Chen & He, 2021, eq. 1): ``D(p, z) = -mean_i cos(p_i, z_i)``, ``z`` detached by the caller."""
    cos = mean_cosine(p, z)
    return {"loss": -cos, "cosine": cos.detach()}


def moco_v3_loss(q: Tensor, k: Tensor, temperature: float) -> LossTerms:
    """MoCo-v3 (Chen, Xie & He, 2021, Alg. 1): ``loss = 2 tau * CE(S, diag)``, ``S_ij = cos(q_i, k_j)/tau``.

    ``CE(S, diag) = mean_i (logsumexp_j S_ij - S_ii) = log N - I_NCE(S)``, so the loss is
    ``2 tau (log N - I_NCE(S))``: InfoNCE with the key encoder's (detached) embeddings as the other view.
    """
    q, k = _pair(q, k)
    nce = infonce_bound(cosine_scores(q, k, temperature))
    return {"loss": 2 * temperature * (math.log(q.shape[0]) - nce), "infonce": nce.detach()}


def _standardize(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-dimension ``(z - mean) / sqrt(var + eps)`` over the batch (biased variance, as BatchNorm1d
    without affine parameters in training mode, which the Barlow Twins reference code uses)."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def barlow_twins_loss(z_a: Tensor, z_b: Tensor, lambd: float = 5.1e-3, scale: float = 1.0) -> LossTerms:
    """Barlow Twins (Zbontar et al., 2021, eq. 1):
    ``loss = scale * ( sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2 )``,
    ``C = z_a_std^T z_b_std / N`` the cross-correlation of the per-dimension standardized embeddings."""
    z_a, z_b = _pair(z_a, z_b)
    c = _standardize(z_a).T @ _standardize(z_b) / z_a.shape[0]
    diag = c.diagonal()
    on_diag = (1 - diag).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    return {"loss": scale * (on_diag + lambd * off_diag), "on_diag": on_diag.detach(), "off_diag": off_diag.detach()}


def _vicreg_regularizers(z: Tensor, gamma: float, eps: float) -> tuple[Tensor, Tensor]:
    """One view's variance hinge ``mean_j relu(gamma - sqrt(Var(z_j) + eps))`` and covariance penalty
    ``(1/D) sum_{i != j} Cov(z)_ij^2`` (unbiased covariance over the batch)."""
    n, d = z.shape
    zc = z - z.mean(0)
    std = torch.sqrt(zc.var(0) + eps)
    cov = zc.T @ zc / (n - 1)
    off = cov.pow(2).sum() - cov.diagonal().pow(2).sum()
    return F.relu(gamma - std).mean(), off / d


def vicreg_loss(z_a: Tensor, z_b: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0, gamma: float = 1.0, eps: float = 1e-4) -> LossTerms:
    """VICReg (Bardes, Ponce & LeCun, 2022, eqs. 1-6), per-view reduction as in the official code:

    ``loss = sim * MSE(z_a, z_b) + std * (v(z_a) + v(z_b)) / 2 + cov * (c(z_a) + c(z_b))``,
    ``v(z) = mean_j relu(gamma - sqrt(Var(z_j) + eps))``, ``c(z) = (1/D) sum_{i != j} Cov(z)_ij^2``.
    The official code averages the two views' variance terms and *sums* their covariance terms
    (docs/methods.md, deviation 1).
    """
    z_a, z_b = _pair(z_a, z_b)
    invariance = F.mse_loss(z_a, z_b)
    std_a, cov_a = _vicreg_regularizers(z_a, gamma, eps)
    std_b, cov_b = _vicreg_regularizers(z_b, gamma, eps)
    variance, covariance = (std_a + std_b) / 2, cov_a + cov_b
    loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
    return {"loss": loss, "invariance": invariance.detach(), "variance": variance.detach(),
            "covariance": covariance.detach()}
