"""Rank and geometry of a representation, as pure functions of embedding matrices (N, D).

- :func:`rankme`: RankMe (Garrido et al., 2023, "RankMe: assessing the downstream performance of pretrained
  self-supervised representations by their rank"), the entropy-based effective rank of the embedding
  matrix's singular values.
- :func:`lidar`: LiDAR (Thilak et al., 2024, "LiDAR: sensing linear probing performance in joint embedding
  SSL architectures"), the effective rank of the linear-discriminant matrix whose classes are the source
  samples and whose members are their views.
- :func:`alpha_req`: alpha-ReQ (Agrawal et al., 2022, "alpha-ReQ: assessing representation quality in
  self-supervised learning by measuring eigenspectrum decay"), the power-law decay exponent of the
  covariance eigenspectrum.
- :func:`alignment` and :func:`uniformity` (Wang & Isola, 2020, "Understanding contrastive representation
  learning through alignment and uniformity on the hypersphere"), on L2-normalized embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

RANKME_EPS = 1e-7  # Garrido et al.'s epsilon inside the entropy
LIDAR_DELTA = 1e-4  # Thilak et al.'s ridge on the within-class covariance
LIDAR_EPS = 1e-7


def _check(z: Tensor, name: str = "embeddings") -> Tensor:
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"{name} must be (N, D) with N >= 2, got shape {tuple(z.shape)}")
    return z.double()


def unit_rows(z: Tensor) -> Tensor:
    """``z_i / ||z_i||`` in float64 for every row of ``z`` (N, D), a zero row left at 0. Each row is first divided
    by its largest magnitude, so that rows of any scale (1e-30 or 1e30, beyond float32's range once squared)
    come out unit vectors, where ``F.normalize``'s absolute ``eps`` leaves rows shorter than 1e-12 short."""
    z = z.double()
    tiny = torch.finfo(torch.float64).tiny
    z = z / z.abs().amax(dim=1, keepdim=True).clamp_min(tiny)
    return z / torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(tiny)


def _entropy_rank(values: Tensor, eps: float) -> Tensor:
    """``exp(-sum_k p_k log p_k)`` with ``p_k = v_k / ||v||_1 + eps``; 0 when every value is 0."""
    total = values.sum()
    if total <= 0:
        return torch.zeros((), dtype=torch.float64)
    p = values / total + eps
    return torch.exp(-(p * torch.log(p)).sum())


def rankme(z: Tensor, eps: float = RANKME_EPS) -> Tensor:
    """RankMe: ``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / ||sigma||_1 + eps``, sigma the singular values of
    the (uncentred, unnormalized) embedding matrix ``z`` (N, D). Between 1 and min(N, D); 0 for z = 0."""
    return _entropy_rank(torch.linalg.svdvals(_check(z)), eps)


def lidar(views: Tensor, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> Tensor:
    """LiDAR of ``views`` (N, Q, D): N source samples ("classes"), Q >= 2 views each.

    ``S_b = 1/N sum_i (mu_i - mu)(mu_i - mu)^T`` (class means mu_i, grand mean mu),
    ``S_w = 1/(NQ) sum_{i,q} (z_iq - mu_i)(z_iq - mu_i)^T + delta I``,
    ``S_lidar = S_w^{-1/2} S_b S_w^{-1/2}``; LiDAR = ``exp(-sum_k p_k log p_k)``, ``p_k = lambda_k / ||lambda||_1
    + eps`` over the eigenvalues of S_lidar. NaN for non-finite views or when the eigensolver fails (a
    monitor must not end a run).
    """
    if views.ndim != 3 or views.shape[0] < 2 or views.shape[1] < 2:
        raise ValueError(f"views must be (N, Q, D) with N >= 2 samples and Q >= 2 views, got {tuple(views.shape)}")
    v = views.double()
    mu_i = v.mean(1)
    mu = mu_i.mean(0)
    cb = mu_i - mu
    s_b = cb.T @ cb / v.shape[0]
    cw = (v - mu_i.unsqueeze(1)).reshape(-1, v.shape[2])
    s_w = cw.T @ cw / cw.shape[0] + delta * torch.eye(v.shape[2], dtype=torch.float64, device=v.device)
    if not bool(torch.isfinite(v).all()):
        return torch.tensor(float("nan"), dtype=torch.float64)
    try:
        w_eig, w_vec = torch.linalg.eigh(s_w)
        inv_sqrt = w_vec @ torch.diag(w_eig.clamp_min(1e-300).rsqrt()) @ w_vec.T
        m = inv_sqrt @ s_b @ inv_sqrt
        lam = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0)
    except torch.linalg.LinAlgError:  # LAPACK gave up (degenerate scatter of a tiny monitor set): no value
        return torch.tensor(float("nan"), dtype=torch.float64)
    return _entropy_rank(lam, eps)


def alpha_req(z: Tensor, rel_floor: float = 1e-10) -> Tensor:
    """alpha-ReQ: the slope ``alpha`` of the least-squares fit ``log lambda_k = c - alpha log k`` over the
    eigenvalues ``lambda_1 >= lambda_2 >= ...`` of the covariance of ``z`` (N, D), using the eigenvalues
    above ``rel_floor * lambda_1`` (numerically zero ones carry no spectrum). Larger alpha: faster decay,
    fewer effective dimensions; NaN when fewer than two eigenvalues remain (e.g. complete collapse)."""
    zc = _check(z)
    zc = zc - zc.mean(0)
    # the slope is scale-free: scaled to a largest entry of 1, the covariance of float64 embeddings ~1e155 and
    # beyond no longer overflows (eigvalsh failed on its inf)
    zc = zc / zc.abs().max().clamp_min(torch.finfo(zc.dtype).tiny)
    lam = torch.linalg.eigvalsh(zc.T @ zc / (zc.shape[0] - 1)).flip(0)
    if lam[0] <= 0:
        return torch.tensor(float("nan"), dtype=torch.float64)
    keep = lam > rel_floor * lam[0]
    if keep.sum() < 2:
        return torch.tensor(float("nan"), dtype=torch.float64)
    log_k = torch.log(torch.arange(1, lam.numel() + 1, dtype=torch.float64, device=lam.device))[keep]
    log_l = torch.log(lam[keep])
    xc = log_k - log_k.mean()
    return -(xc * (log_l - log_l.mean())).sum() / (xc * xc).sum()


def alignment(u: Tensor, v: Tensor, alpha: float = 2.0) -> Tensor:
    """``E_i || u_i/||u_i|| - v_i/||v_i|| ||_2^alpha`` over positive pairs (lower: better aligned; in [0, 2^alpha])."""
    u, v = _check(u, "u"), _check(v, "v")
    if u.shape != v.shape:
        raise ValueError(f"u and v must have equal shapes, got {tuple(u.shape)} and {tuple(v.shape)}")
    return (unit_rows(u) - unit_rows(v)).norm(dim=1).pow(alpha).mean()


def uniformity(z: Tensor, t: float = 2.0) -> Tensor:
    """``log E_{i != j} exp(-t || z_i/||z_i|| - z_j/||z_j|| ||^2)`` (lower: more uniform on the sphere; 0 under
    complete collapse, all rows one direction or all zero). With ``a = z_i/||z_i||`` (:func:`unit_rows`, 0 for a
    zero row), ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b``: one Gram matrix, in ``z``'s precision (at least
    float32), whose exponent lies in [-4t, 0]: for ``4t <= 80`` its exponentials neither overflow nor
    underflow and are summed directly, otherwise through logsumexp."""
    _check(z)
    zn = unit_rows(z).to(z.dtype if z.dtype == torch.float64 else torch.float32)
    n = zn.shape[0]
    r = zn.pow(2).sum(1)  # 1, or 0 for a zero row
    k = torch.addmm(-t * (r[:, None] + r[None, :]), zn, zn.T, alpha=2.0 * t)
    k.clamp_max_(0).diagonal().fill_(-math.inf)  # the i = j terms are left out
    total = torch.log(k.exp_().sum()) if 4 * t <= 80 else torch.logsumexp(k.flatten(), dim=0)
    return (total - math.log(n * (n - 1))).double()


UNIFORMITY_POINTS = 1024


def geometry(u: Tensor, v: Tensor) -> dict[str, float]:
    """The two-view monitors of paired embeddings ``u``, ``v`` (N, D) of the same samples: LiDAR with the
    pair as each sample's two views, alignment, and uniformity averaged over the two sides (on the first
    ``UNIFORMITY_POINTS`` rows: its cost is quadratic in N)."""
    m = UNIFORMITY_POINTS
    return {"lidar": lidar(torch.stack([u, v], dim=1)).item(), "alignment": alignment(u, v).item(),
            "uniformity": (0.5 * (uniformity(u[:m]) + uniformity(v[:m]))).item()}


def spectrum(z: Tensor) -> dict[str, float]:
    """The one-view monitors of embeddings ``z`` (N, D): RankMe and alpha-ReQ."""
    return {"rankme": rankme(z).item(), "alpha_req": alpha_req(z).item()}
