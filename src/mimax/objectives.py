"""Training objectives (METHODS.md §4), each a pure function of two batches of embeddings.

Every objective returns a dict of named scalar tensors: ``"loss"`` is what the optimizer minimizes, the
other entries are its terms, logged per epoch in ``metrics.csv``. Objectives compute in fp32 whatever
the autocast precision of the encoder (``_fp32``), and the MI-based ones are built on :mod:`mimax.bounds`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mimax.bounds import cosine_scores, dv_joint_term, dv_marginal_term

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
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    loss = F.cross_entropy(logits, targets)
    return {"loss": loss}
