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
from torch.autograd.function import once_differentiable


def _check_square(scores: Tensor, name: str = "scores") -> int:
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"{name} must be a square N x N score matrix, got shape {tuple(scores.shape)}")
    n = scores.shape[0]
    if n < 2:
        raise ValueError(f"{name} needs N >= 2 (the marginal term uses off-diagonal pairs), got N = {n}")
    return n


def _off_diagonal_view(scores: Tensor) -> Tensor:
    """The off-diagonal entries of a contiguous square matrix as an (N-1, N) strided view, no copy: row r
    holds the N entries that follow diagonal entry r in memory (``S[r, r+1:]`` then ``S[r+1, :r+1]``)."""
    n = scores.shape[0]
    return scores.flatten()[1:].view(n - 1, n + 1)[:, :-1]


def _off_diagonal(scores: Tensor) -> Tensor:
    """The N(N-1) off-diagonal entries of a square matrix, as a flat vector."""
    return _off_diagonal_view(scores).flatten()


def _softplus(x: Tensor) -> Tensor:
    """``softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^{-|x|})`` (exact identity, no overflow).

    Why not ``F.softplus``: on the CPU in fp32 it goes through a scalar ``log1p``, several times slower than
    ``exp`` + ``log`` on the MI monitor's score matrices (``benchmarks/mi_overhead.py`` measures the monitor).
    ``log`` of a number in [1, 2] loses only the relative precision of terms below float32's epsilon, an
    absolute error < 1e-7 per entry.
    """
    return x.clamp_min(0) + torch.log(1 + torch.exp(-x.abs()))


# Embedding widths up to this many floats get the transposed operand layouts of pair_products on the CPU.
NARROW_PAIR_WIDTH = 8


def pair_products(a: Tensor, b: Tensor) -> Tensor:
    """``P = a @ b.T`` (N, M) of row sets ``a`` (N, D) and ``b`` (M, D): the score matrix of a bilinear critic.

    Why the operand layouts: torch's matmul backward returns each gradient in its input's memory layout, so
    ``a @ b.T`` computes ``dP @ b`` and ``dP.T @ a``, (N x M) @ (M x D) products whose output has D columns.
    CPU BLAS kernels vectorize along those columns and waste most SIMD lanes when D is narrower than a
    register: on a 2-core AMD EPYC (AVX2, MKL) the forward + backward of a 512 x 3 product took 1.88 ms,
    against 0.80 ms with ``a`` column-major and ``b.T`` row-major, which makes the backward compute the
    same gradients as ``(b.T @ dP.T).T`` and ``(a.T @ dP).T``, long rows instead. From D = 16 on the plain
    layout was the faster one (D = 16, 64, 128, 2048 measured; benchmarks/objectives.py), so only
    embeddings up to :data:`NARROW_PAIR_WIDTH` wide on the CPU, with a gradient to compute, are laid out.
    The value is the same product (the rounding of each D-term dot product may differ in the last bit)."""
    narrow = a.shape[-1] <= NARROW_PAIR_WIDTH and a.device.type == "cpu"
    if narrow and torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return a.T.contiguous().T @ b.T.contiguous()
    return a @ b.T


def cosine_scores(u: Tensor, v: Tensor, temperature: float) -> Tensor:
    """Cosine critic: ``S_ij = cos(u_i, v_j) / tau`` for embeddings ``u, v`` of shape (N, D)."""
    if u.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"u and v must both be (N, D) with equal shapes, got {tuple(u.shape)} and {tuple(v.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # 1/tau scales the (N, D) side before the product rather than the (N, N) result: one pass over N x D
    # entries instead of N^2, forward and backward
    return pair_products(F.normalize(u, dim=1) * (1.0 / temperature), F.normalize(v, dim=1))


def dv_joint_term(scores: Tensor) -> Tensor:
    """Joint term of the DV bound: ``mean_i S_ii``."""
    _check_square(scores)
    return scores.diagonal().mean()


def _shifted_exp_off_diagonal(scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(m, E, s)``: ``m`` the largest off-diagonal score, ``E = exp(S_ij - m)`` over the off-diagonal entries
    ((N-1, N), see :func:`_off_diagonal_view`) and ``s = sum E``, so that ``log sum_{i != j} exp(S_ij) =
    m + log s`` (``1 <= s <= N(N-1)``: neither overflows nor underflows)."""
    off = _off_diagonal_view(scores.contiguous())
    m = off.amax()
    e = torch.sub(off, m).exp_()
    return m, e, e.sum()


class _OffDiagonalLogMeanExp(torch.autograd.Function):
    """``log( 1/(N(N-1)) sum_{i != j} exp(S_ij) )`` with its gradient ``exp(S_ij) / sum_{k != l} exp(S_kl)``
    off the diagonal, 0 on it.

    Why our own backward: autograd through ``logsumexp`` of the gathered off-diagonal entries makes about nine
    passes over the N x N matrix (gather copy, max, shift, exp, sum; then exp again, multiply, and a scatter
    into zeros), this makes four (shift, exp, sum; one multiply into the gradient), keeping ``E`` from the
    forward pass. On the CPU the marginal term of the DV objectives took ~20% less time forward + backward
    (benchmarks/objectives.py)."""

    @staticmethod
    def forward(ctx, scores: Tensor) -> Tensor:
        n = scores.shape[0]
        m, e, s = _shifted_exp_off_diagonal(scores)
        ctx.save_for_backward(e, s)
        return m + torch.log(s) - math.log(n * (n - 1))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        e, s = ctx.saved_tensors
        n = e.shape[1]
        out = torch.empty(n * n, dtype=e.dtype, device=e.device).view(n, n)
        torch.mul(e, grad / s, out=_off_diagonal_view(out))
        out.diagonal().zero_()
        return out


def dv_marginal_term(scores: Tensor) -> Tensor:
    """Marginal term of the DV bound: ``log( 1/(N(N-1)) sum_{i != j} exp(S_ij) )``, computed as
    ``m + log sum_{i != j} exp(S_ij - m) - log(N(N-1))`` with ``m`` the largest off-diagonal score."""
    n = _check_square(scores)
    if scores.requires_grad and torch.is_grad_enabled():
        return _OffDiagonalLogMeanExp.apply(scores)
    m, _, s = _shifted_exp_off_diagonal(scores)
    return m + torch.log(s) - math.log(n * (n - 1))


def dv_bound(scores: Tensor) -> Tensor:
    """Donsker-Varadhan bound: ``I_DV(S) = mean_i S_ii - log( 1/(N(N-1)) sum_{i != j} exp(S_ij) )``.

    Transpose-invariant: ``I_DV(S) == I_DV(S.T)``. Zero for a constant matrix (a collapsed batch).
    """
    return dv_joint_term(scores) - dv_marginal_term(scores)


def infonce_bound(scores: Tensor) -> Tensor:
    """InfoNCE bound: ``I_NCE(S) = log N + mean_i (S_ii - logsumexp_j S_ij)``; never exceeds ``log N``."""
    n = _check_square(scores)
    # -mean_i log softmax_j(S_ij)|_{j=i} is the cross-entropy of the rows against the diagonal: its fused
    # log-softmax kernels make fewer passes over S, forward and backward, than logsumexp and a diagonal
    return math.log(n) - F.cross_entropy(scores, torch.arange(n, device=scores.device))


def jsd_bound(scores: Tensor) -> Tensor:
    """Jensen-Shannon (Deep InfoMax) score:
    ``I_JSD(S) = mean_i(-softplus(-S_ii)) - 1/(N(N-1)) sum_{i != j} softplus(S_ij)``.

    A dependence score monotone in the JS divergence between joint and product of marginals, not nats.
    Under collapse (constant S = c) it equals ``-softplus(-c) - softplus(c)``.
    """
    _check_square(scores)
    return (-_softplus(-scores.diagonal())).mean() - _softplus(_off_diagonal(scores)).mean()


def nwj_bound(scores: Tensor) -> Tensor:
    """NWJ bound (Nguyen, Wainwright & Jordan, 2010; the f-divergence form of Poole et al., 2019):
    ``I_NWJ(S) = mean_i S_ii - e^{-1} * 1/(N(N-1)) sum_{i != j} exp(S_ij)``.

    Tight at ``S = 1 + log p(u,v)/(p(u)p(v))``; unbiased in the marginal term (no log of a mean), at the price
    of a variance that grows like ``e^{I}``.
    """
    _check_square(scores)
    return dv_joint_term(scores) - torch.exp(dv_marginal_term(scores) - 1.0)


def smile_bound(scores: Tensor, clip: float = 5.0) -> Tensor:
    """SMILE, the clipped DV estimate (Song & Ermon, 2020, "Understanding the limitations of variational
    mutual information estimators"): ``mean_i S_ii - log( 1/(N(N-1)) sum_{i != j} exp(clip(S_ij, -c, c)) )``.

    Clipping the marginal's scores to ``[-c, c]`` bounds its variance by ``e^{2c}`` at the price of a bias
    when the density ratio leaves ``[e^{-c}, e^{c}]``; ``c -> inf`` is :func:`dv_bound`.
    """
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    return dv_joint_term(scores) - dv_marginal_term(scores.clamp(-clip, clip))


BOUNDS = {"cos-DV": dv_bound, "InfoNCE": infonce_bound, "JSD": jsd_bound}

# Above this row maximum, exp(S_ij) could overflow float32; the shared-exponential path is then not used.
_SHARED_EXP_LIMIT = 60.0


def bound_values(scores: Tensor, perm: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Every bound of :data:`BOUNDS` of a score matrix ``S`` (N, N) and of its column-permuted counterpart
    ``S' = S[:, perm]`` (``perm`` a permutation without fixed points), from one exponential of ``S``.

    Equal to ``({name: bound(S)}, {name: bound(S[:, perm])})`` (tested against the bounds and NumPy), at half
    their cost or less: row i of ``S'`` holds the same values as row i of ``S``, its diagonal entry being
    ``S_{i,p(i)}`` instead of ``S_ii``. With row maxima ``m_i``, ``E_ij = exp(S_ij - m_i)`` and the row sums
    ``q_i`` of ``E`` without the two entries ``j = i`` and ``j = p(i)`` (sums of positive terms only, so no
    cancellation), the off-diagonal sums are ``r_i = q_i + E_{i,p(i)}`` for ``S`` and ``r'_i = q_i + E_ii`` for
    ``S'``, and, per matrix with diagonal ``d``:

    - InfoNCE: ``log N + mean_i (d_i - m_i - log(q_i + E_ii + E_{i,p(i)}))``;
    - cos-DV: ``mean_i d_i - log( 1/(N(N-1)) sum_i e^{m_i} r_i )``, the outer sum by logsumexp over i;
    - JSD: ``mean_i(-softplus(-d_i)) - 1/(N(N-1)) (Q + sum_i softplus(o_i))``, ``Q`` the sum of
      ``softplus(S_ij) = log(1 + E_ij e^{m_i})`` over the entries left out of ``q`` and ``o`` the other matrix's
      diagonal; when some ``m_i`` exceeds ``_SHARED_EXP_LIMIT`` the softplus is computed directly instead,
      so that no entry overflows.
    """
    n = _check_square(scores)
    perm = perm.to(scores.device)
    rows = torch.arange(n, device=scores.device)
    if perm.shape != (n,) or bool((perm == rows).any()) or not torch.equal(perm.sort().values, rows):
        raise ValueError(f"perm must be a permutation of range({n}) without fixed points")
    d, d_perm = scores.diagonal(), scores[rows, perm]
    m = scores.amax(dim=1, keepdim=True)
    e = torch.exp(scores - m)
    e_d, e_perm = e.diagonal().clone(), e[rows, perm]
    e.diagonal().zero_()
    e[rows, perm] = 0
    q = e.sum(dim=1)
    m = m.squeeze(1)
    if bool(m.max() <= _SHARED_EXP_LIMIT):
        q_sp = e.mul_(torch.exp(m).unsqueeze(1)).add_(1.0).log_().sum()
    else:
        sp = _softplus(scores)
        sp.diagonal().zero_()
        sp[rows, perm] = 0
        q_sp = sp.sum()
    lse = m + torch.log(q + e_d + e_perm)
    pairs = n * (n - 1)

    def values(diag: Tensor, off: Tensor, other_diag: Tensor) -> dict[str, Tensor]:
        return {"cos-DV": diag.mean() - (torch.logsumexp(m + torch.log(off), dim=0) - math.log(pairs)),
                "InfoNCE": math.log(n) + (diag - lse).mean(),
                "JSD": (-_softplus(-diag)).mean() - (q_sp + _softplus(other_diag).sum()) / pairs}

    return values(d, q + e_perm, d_perm), values(d_perm, q + e_d, d)
