"""Each method objective against an independent loop/NumPy reference, plus a descent test per objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mimax.objectives import (
    barlow_twins_loss,
    byol_loss,
    dv_objective,
    jmi_objective,
    moco_v3_loss,
    nt_xent_loss,
    simsiam_loss,
    vicreg_loss,
)


def _batch(n=12, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    v = 0.6 * u + torch.randn(n, d, generator=g, dtype=torch.float64)
    return u, v


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_jmi_no_marginal_is_the_joint_term_only():
    u, v = _batch(seed=1)
    joint = np.mean([_cos(u[i].numpy(), v[i].numpy()) for i in range(len(u))]) / 0.2
    assert jmi_objective(u, v, 0.2, marginal=False)["loss"].item() == pytest.approx(-joint, rel=1e-5)
    assert jmi_objective(u, v, 0.2)["loss"].item() != pytest.approx(-joint, rel=1e-3)


def test_byol_and_simsiam_match_reference():
    p, z = _batch(seed=2)
    mean_cos = np.mean([_cos(p[i].numpy(), z[i].numpy()) for i in range(len(p))])
    assert byol_loss(p, z)["loss"].item() == pytest.approx(2 - 2 * mean_cos, rel=1e-6)
    assert simsiam_loss(p, z)["loss"].item() == pytest.approx(-mean_cos, rel=1e-6)


def test_moco_v3_matches_scaled_cross_entropy_reference():
    q, k = _batch(seed=3)
    tau, n = 0.2, len(q)
    ce = 0.0
    for i in range(n):
        logits = [_cos(q[i].numpy(), k[j].numpy()) / tau for j in range(n)]
        ce += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    assert moco_v3_loss(q, k, tau)["loss"].item() == pytest.approx(2 * tau * ce / n, rel=1e-5)


def test_barlow_twins_matches_reference():
    a, b = (t.numpy() for t in _batch(n=16, d=4, seed=5))
    n, d, lambd, scale = a.shape[0], a.shape[1], 5.1e-3, 0.1
    an = (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)  # np.var is the biased variance, as BatchNorm's
    bn = (b - b.mean(0)) / np.sqrt(b.var(0) + 1e-5)
    c = np.array([[sum(an[k, i] * bn[k, j] for k in range(n)) / n for j in range(d)] for i in range(d)])
    ref = sum((1 - c[i, i]) ** 2 for i in range(d)) + lambd * sum(c[i, j] ** 2 for i in range(d)
                                                                   for j in range(d) if i != j)
    out = barlow_twins_loss(torch.from_numpy(a), torch.from_numpy(b), lambd, scale)
    assert out["loss"].item() == pytest.approx(scale * ref, rel=1e-6)


def test_vicreg_matches_official_per_view_reduction():
    a, b = (t.numpy() for t in _batch(n=16, d=4, seed=6))
    n, d = a.shape

    def var_term(z):
        return np.mean([max(0.0, 1 - math.sqrt(np.var(z[:, j], ddof=1) + 1e-4)) for j in range(d)])

    def cov_term(z):
        zc = z - z.mean(0)
        cov = zc.T @ zc / (n - 1)
        return sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d

    mse = np.mean((a - b) ** 2)
    # official code (facebookresearch/vicreg main_vicreg.py): std terms averaged, cov terms summed
    ref = 25 * mse + 25 * (var_term(a) + var_term(b)) / 2 + 1 * (cov_term(a) + cov_term(b))
    out = vicreg_loss(torch.from_numpy(a), torch.from_numpy(b))
    assert out["loss"].item() == pytest.approx(ref, rel=1e-6)
    assert out["variance"].item() > 0  # the hinge is active at this scale, so the term is exercised


OBJECTIVES = {
    "dv": lambda u, v: dv_objective(u, v, 0.2),
    "byol": lambda u, v: byol_loss(u, v.detach()),
    "simsiam": lambda u, v: simsiam_loss(u, v.detach()),
    "mocov3": lambda u, v: moco_v3_loss(u, v.detach(), 0.2),
    "nt_xent": lambda u, v: nt_xent_loss(u, v, 0.2),
    "barlow": lambda u, v: barlow_twins_loss(u, v),
    "vicreg": lambda u, v: vicreg_loss(u, v),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_descends(name):
    torch.manual_seed(0)
    x_a, x_b = torch.randn(32, 6), torch.randn(32, 6)
    x_b = 0.5 * x_a + x_b
    net = torch.nn.Linear(6, 4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = OBJECTIVES[name](net(x_a), net(x_b))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1e-3, (name, losses[0], losses[-1])


@pytest.mark.parametrize("fn", [byol_loss, simsiam_loss, barlow_twins_loss, vicreg_loss])
def test_objectives_reject_mismatched_shapes(fn):
    with pytest.raises(ValueError, match="equal shape"):
        fn(torch.randn(8, 3), torch.randn(8, 4))
