"""DV / JMI and NT-Xent objectives against loop references, and descent tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mimax.objectives import dv_objective, jmi_objective, nt_xent_loss


def ref_dv(u: np.ndarray, v: np.ndarray, tau: float) -> tuple[float, float]:
    """(joint, marginal) of the cosine-critic DV bound, with explicit loops."""
    n = len(u)
    un = u / np.linalg.norm(u, axis=1, keepdims=True)
    vn = v / np.linalg.norm(v, axis=1, keepdims=True)
    joint = sum(float(un[i] @ vn[i]) / tau for i in range(n)) / n
    off = [math.exp(float(un[i] @ vn[j]) / tau) for i in range(n) for j in range(n) if i != j]
    return joint, math.log(sum(off) / (n * (n - 1)))


def ref_nt_xent(u: np.ndarray, v: np.ndarray, tau: float) -> float:
    z = np.concatenate([u, v])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n2, n = len(z), len(u)
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -(float(z[i] @ z[pos]) / tau - math.log(denom))
    return total / n2


@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.5), (7, 4, 0.1), (16, 2, 0.2), (33, 8, 0.05)])
def test_dv_matches_loop_reference(n, d, tau):
    gen = torch.Generator().manual_seed(n * d)
    u, v = torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(n, d, generator=gen, dtype=torch.float64)
    joint, marg = ref_dv(u.numpy(), v.numpy(), tau)
    out = dv_objective(u, v, tau)
    assert out["joint"].item() == pytest.approx(joint, rel=1e-5, abs=1e-5)
    assert out["marginal"].item() == pytest.approx(marg, rel=1e-5, abs=1e-5)
    assert out["loss"].item() == pytest.approx(-(joint - marg), rel=1e-5, abs=1e-5)
    assert dv_objective(u, v, tau, marginal=False)["loss"].item() == pytest.approx(-joint, rel=1e-5, abs=1e-5)


def test_jmi_is_symmetric_in_the_view_swap():
    gen = torch.Generator().manual_seed(3)
    u, v = torch.randn(12, 5, generator=gen), torch.randn(12, 5, generator=gen)
    a, b = jmi_objective(u, v, 0.2)["loss"], jmi_objective(v, u, 0.2)["loss"]
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.5), (9, 4, 0.1), (20, 16, 0.2)])
def test_nt_xent_matches_loop_reference(n, d, tau):
    gen = torch.Generator().manual_seed(n + d)
    u, v = torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(n, d, generator=gen, dtype=torch.float64)
    assert nt_xent_loss(u, v, tau)["loss"].item() == pytest.approx(ref_nt_xent(u.numpy(), v.numpy(), tau), rel=1e-6)


def test_dv_is_stable_at_low_temperature():
    u = torch.randn(64, 8)
    out = dv_objective(u, u.clone(), 0.01)
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("objective", [
    lambda u, v: dv_objective(u, v, 0.2)["loss"],
    lambda u, v: jmi_objective(u, v, 0.2)["loss"],
    lambda u, v: nt_xent_loss(u, v, 0.2)["loss"],
])
def test_descent_on_objective(objective):
    """Gradient steps on free embeddings lower the loss (and align the pairs)."""
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(32, 4, generator=gen, requires_grad=True)
    v = torch.randn(32, 4, generator=gen, requires_grad=True)
    opt = torch.optim.SGD([u, v], lr=0.5)
    first = objective(u, v).item()
    for _ in range(50):
        opt.zero_grad()
        objective(u, v).backward()
        opt.step()
    assert objective(u, v).item() < first - 0.5
    cos = torch.nn.functional.cosine_similarity(u, v).mean().item()
    assert cos > 0.5


def test_objectives_reject_bad_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        dv_objective(torch.randn(4, 3), torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError, match="N >= 2"):
        nt_xent_loss(torch.randn(1, 3), torch.randn(1, 3), 0.1)
