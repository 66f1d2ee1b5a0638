"""Gradients of the bounds and of the objectives built on them, against finite differences and a plain float64
formulation (masked logsumexp, explicit norms, the division by tau after the product): the training steps
follow these gradients, and mimax computes some of them with its own backward (docs/methods.md §2)."""

from __future__ import annotations

import math

import pytest
import torch

from mimax.bounds import cosine_scores, dv_bound, dv_marginal_term, infonce_bound, pair_products
from mimax.objectives import dv_objective, moco_v3_loss, nt_xent_loss


def plain_scores(u: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
    un = u / u.pow(2).sum(1, keepdim=True).sqrt()
    vn = v / v.pow(2).sum(1, keepdim=True).sqrt()
    return (un @ vn.T) / tau


def plain_marginal(s: torch.Tensor) -> torch.Tensor:
    n = s.shape[0]
    off = s[~torch.eye(n, dtype=torch.bool)]
    return torch.logsumexp(off, 0) - math.log(n * (n - 1))


def plain_dv_loss(u, v, tau):
    s = plain_scores(u, v, tau)
    return -(s.diagonal().mean() - plain_marginal(s))


def plain_infonce(s):
    n = s.shape[0]
    return math.log(n) + (s.diagonal() - torch.logsumexp(s, 1)).mean()


def plain_nt_xent(u, v, tau):
    n = u.shape[0]
    z = torch.cat([u, v])
    s = plain_scores(z, z, tau)
    rows = [torch.logsumexp(torch.cat([s[i, :i], s[i, i + 1:]]), 0) - s[i, (i + n) % (2 * n)] for i in range(2 * n)]
    return torch.stack(rows).mean()


def _grads(fn, u, v):
    u, v = u.clone().requires_grad_(), v.clone().requires_grad_()
    value = fn(u, v)
    return (value.detach(), *torch.autograd.grad(value, (u, v)))


# (mimax, plain): the objectives compute in fp32 whatever their inputs; the bounds in the inputs' precision
OBJECTIVES = {
    "dv": (lambda u, v: dv_objective(u, v, 0.2)["loss"], lambda u, v: plain_dv_loss(u, v, 0.2)),
    "mocov3": (lambda u, v: moco_v3_loss(u, v, 0.2)["loss"],
               lambda u, v: 2 * 0.2 * (math.log(u.shape[0]) - plain_infonce(plain_scores(u, v, 0.2)))),
    "nt_xent": (lambda u, v: nt_xent_loss(u, v, 0.2)["loss"], lambda u, v: plain_nt_xent(u, v, 0.2)),
}
BOUNDS = {
    "dv": (lambda u, v: dv_bound(cosine_scores(u, v, 0.1)), lambda u, v: -plain_dv_loss(u, v, 0.1)),
    "infonce": (lambda u, v: infonce_bound(cosine_scores(u, v, 0.1)),
                lambda u, v: plain_infonce(plain_scores(u, v, 0.1))),
}


def _pairs(n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(n * 100 + d)
    u, v = torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(n, d, generator=gen, dtype=torch.float64)
    return u, v + 2 * u  # correlated pairs: the diagonal stands out, as in training


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("n,d", [(2, 3), (7, 2), (64, 3), (33, 16)])
def test_objective_gradients_match_a_plain_float64_formulation(name, n, d):
    u, v = _pairs(n, d)
    ours, plain = OBJECTIVES[name]
    for got, ref in zip(_grads(ours, u.float(), v.float()), _grads(plain, u, v)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(BOUNDS))
@pytest.mark.parametrize("n,d", [(2, 3), (7, 2), (64, 3), (33, 16)])
def test_bound_gradients_match_a_plain_formulation_in_float64(name, n, d):
    u, v = _pairs(n, d)
    ours, plain = BOUNDS[name]
    for got, ref in zip(_grads(ours, u, v), _grads(plain, u, v)):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n,scale,dominant", [(2, 1.0, 0.0), (9, 3.0, 0.0), (40, 30.0, 0.0), (16, 1.0, 200.0)])
def test_marginal_term_gradient_against_finite_differences(n, scale, dominant):
    """The DV marginal's own backward (gradcheck: central differences in float64), with large scores and with a
    diagonal 200 above the rest, whose exponential would swamp the off-diagonal sum were it included."""
    gen = torch.Generator().manual_seed(n)
    s = torch.randn(n, n, generator=gen, dtype=torch.float64) * scale + dominant * torch.eye(n, dtype=torch.float64)
    s.requires_grad_()
    assert torch.autograd.gradcheck(dv_marginal_term, (s,))
    grad, = torch.autograd.grad(dv_marginal_term(s), s)
    assert torch.all(grad.diagonal() == 0)
    assert grad.sum().item() == pytest.approx(1.0)  # a softmax over the off-diagonal entries
    with torch.no_grad():  # the no-grad path (the monitors) gives the same value
        assert dv_marginal_term(s).item() == pytest.approx(plain_marginal(s.detach()).item(), rel=1e-12)
    assert dv_marginal_term(s).item() == pytest.approx(plain_marginal(s.detach()).item(), rel=1e-12)


def test_bounds_on_non_contiguous_score_matrices():
    s = torch.randn(12, 12, dtype=torch.float64)
    for bound in (dv_bound, infonce_bound, dv_marginal_term):
        assert bound(s.T).item() == pytest.approx(bound(s.T.contiguous()).item(), rel=1e-12)
        leaf = s.clone().requires_grad_()
        grad_t, = torch.autograd.grad(bound(leaf.T), leaf)
        leaf2 = s.T.contiguous().requires_grad_()
        grad_c, = torch.autograd.grad(bound(leaf2), leaf2)
        torch.testing.assert_close(grad_t.T, grad_c)


def test_cosine_scores_gradient_matches_the_plain_formulation():
    gen = torch.Generator().manual_seed(3)
    u, v = (torch.randn(20, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    weights = torch.randn(20, 20, generator=gen, dtype=torch.float64)

    def ours(a, b):
        return (cosine_scores(a, b, 0.07) * weights).sum()

    def plain(a, b):
        return (plain_scores(a, b, 0.07) * weights).sum()

    for got, ref in zip(_grads(ours, u, v), _grads(plain, u, v)):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d", [2, 3, 8, 9, 16])
@pytest.mark.parametrize("grad_of", ["a", "b", "both"])
def test_pair_products_is_the_product_with_its_gradients(d, grad_of):
    """Narrow rows take the transposed operand layouts (pair_products' docstring), wide ones the plain product:
    both are ``a @ b.T`` with the same gradients, against a float64 product."""
    gen = torch.Generator().manual_seed(d)
    a, b = torch.randn(30, d, generator=gen), torch.randn(25, d, generator=gen)
    w = torch.randn(30, 25, generator=gen)
    a.requires_grad_(grad_of in ("a", "both"))
    b.requires_grad_(grad_of in ("b", "both"))
    p = pair_products(a, b)
    assert p.shape == (30, 25)
    torch.testing.assert_close(p.double(), a.detach().double() @ b.detach().double().T, rtol=1e-5, atol=1e-5)
    leaves = [t for t in (a, b) if t.requires_grad]
    grads = torch.autograd.grad((p * w).sum(), leaves)
    ref = {"a": w.double() @ b.detach().double(), "b": w.double().T @ a.detach().double()}
    for t, g in zip(leaves, grads):
        assert g.shape == t.shape
        torch.testing.assert_close(g.double(), ref["a" if t is a else "b"], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(pair_products(a, b), a @ b.T)  # no gradient to compute: the plain product
