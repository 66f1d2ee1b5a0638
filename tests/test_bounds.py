"""The bounds of mimax.bounds (docs/methods.md §2): against an independent NumPy computation, and their
closed-form and limiting cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mimax.bounds import BOUNDS, bound_values, cosine_scores, dv_bound, infonce_bound, jsd_bound


def np_logmeanexp(x: np.ndarray) -> float:
    m = x.max()
    return float(m + np.log(np.mean(np.exp(x - m))))


def np_dv(s: np.ndarray) -> float:
    off = s[~np.eye(len(s), dtype=bool)]
    return float(np.mean(np.diag(s))) - np_logmeanexp(off)


def np_infonce(s: np.ndarray) -> float:
    n = len(s)
    rows = [np.log(np.sum(np.exp(s[i] - s[i].max()))) + s[i].max() for i in range(n)]
    return math.log(n) + float(np.mean(np.diag(s) - np.array(rows)))


def np_jsd(s: np.ndarray) -> float:
    off = s[~np.eye(len(s), dtype=bool)]
    return float(np.mean(-np.logaddexp(0.0, -np.diag(s))) - np.mean(np.logaddexp(0.0, off)))


NP_REFERENCE = {"cos-DV": np_dv, "InfoNCE": np_infonce, "JSD": np_jsd}


@pytest.mark.parametrize("n,scale", [(2, 1.0), (5, 3.0), (64, 10.0), (200, 20.0)])
def test_bounds_match_numpy_on_random_score_matrices(n, scale):
    rng = np.random.default_rng(n)
    s = rng.normal(size=(n, n)) * scale + np.eye(n) * rng.uniform(0, scale)
    for name, bound in BOUNDS.items():
        got = bound(torch.tensor(s, dtype=torch.float64)).item()
        assert got == pytest.approx(NP_REFERENCE[name](s), rel=1e-9, abs=1e-9), name
        got32 = bound(torch.tensor(s, dtype=torch.float32)).item()  # the monitors' precision
        assert got32 == pytest.approx(NP_REFERENCE[name](s), rel=1e-4, abs=1e-4), name


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm


@pytest.mark.parametrize("n,scale,dominant", [(2, 1.0, 0.0), (5, 3.0, 0.0), (64, 10.0, 0.0), (200, 20.0, 0.0),
                                              (16, 100.0, 0.0), (128, 0.5, 40.0)])
def test_bound_values_match_numpy_for_paired_and_shuffled(n, scale, dominant):
    """The one-pass evaluation of every bound of S and of S[:, perm], against NumPy on each matrix. Scale 100:
    row maxima above the shared-exponential limit (the direct softplus path); dominant: a diagonal 40 above
    every other score, where subtracting e^{S_ii} from a row sum would lose the off-diagonal terms."""
    rng = np.random.default_rng(n)
    s = rng.normal(size=(n, n)) * scale + np.eye(n) * (dominant or rng.uniform(0, scale))
    perm = _derangement(n, rng)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        paired, shuffled = bound_values(torch.tensor(s, dtype=dtype), torch.tensor(perm))
        assert set(paired) == set(shuffled) == set(BOUNDS)
        for name in BOUNDS:
            assert paired[name].item() == pytest.approx(NP_REFERENCE[name](s), rel=tol, abs=tol), (name, dtype)
            assert shuffled[name].item() == pytest.approx(NP_REFERENCE[name](s[:, perm]), rel=tol, abs=tol), (
                name, dtype)


def test_bound_values_checks_its_inputs():
    with pytest.raises(ValueError, match="square"):
        bound_values(torch.zeros(3, 4), torch.tensor([1, 2, 0]))
    for bad in ([0, 2, 1], [1, 1, 0], [1, 2]):  # a fixed point, not a permutation, wrong length
        with pytest.raises(ValueError, match="without fixed points"):
            bound_values(torch.zeros(3, 3), torch.tensor(bad))


def test_cosine_scores_match_numpy():
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    ref = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) / 0.1 for b in v] for a in u])
    got = cosine_scores(torch.tensor(u), torch.tensor(v), 0.1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_large_scores_do_not_overflow():
    s = torch.full((8, 8), 1e4) + torch.eye(8)  # tau = 1e-4 on cosines: exp would overflow
    for name, bound in BOUNDS.items():
        assert math.isfinite(bound(s).item()), name
        # float32 resolves scores of 1e4 to ~1e-3: compared with the float64 value
        paired, shuffled = bound_values(s, torch.arange(8).roll(1))
        assert paired[name].item() == pytest.approx(bound(s.double()).item(), abs=2e-3), name
        assert shuffled[name].item() == pytest.approx(bound(s.double()[:, torch.arange(8).roll(1)]).item(),
                                                      abs=2e-3), name


def test_infonce_never_exceeds_log_n():
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        n = 2 + trial % 40
        s = torch.randn(n, n, generator=gen) * (1 + trial % 25)
        assert infonce_bound(s).item() <= math.log(n)
    for n in (2, 16, 512):  # a perfect critic reaches the ceiling, and no further (fp64: log N exactly)
        s = torch.eye(n, dtype=torch.float64) * 1e3
        assert infonce_bound(s).item() == pytest.approx(math.log(n), abs=1e-6)
        assert infonce_bound(s).item() <= math.log(n)


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5])
def test_collapsed_batch_scores_zero(tau):
    u = torch.tensor([[0.3, -1.0, 2.0]]).repeat(64, 1)  # every u_i equal, every v_i equal
    v = torch.tensor([[1.0, 0.5, 0.2]]).repeat(64, 1)
    s = cosine_scores(u, v, tau)
    assert dv_bound(s).item() == pytest.approx(0.0, abs=1e-5)
    assert infonce_bound(s).item() == pytest.approx(0.0, abs=1e-5)
    c = float(np.dot([0.3, -1.0, 2.0], [1.0, 0.5, 0.2]) / np.linalg.norm([0.3, -1.0, 2.0])
              / np.linalg.norm([1.0, 0.5, 0.2]) / tau)
    expected_jsd = -np.logaddexp(0.0, -c) - np.logaddexp(0.0, c)  # docs/methods.md §2: JSD under collapse
    assert jsd_bound(s).item() == pytest.approx(expected_jsd, rel=1e-5)


def correlated_pairs(rho: float, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u = x, v = rho x + sqrt(1 - rho^2) eps: jointly Gaussian, correlation rho per dimension."""
    return x, rho * x + math.sqrt(1 - rho**2) * noise


def test_estimates_rise_monotonically_with_correlation_and_stay_below_true_mi():
    d, n = 8, 512
    gen = torch.Generator().manual_seed(0)
    x, noise = torch.randn(2, n, d, generator=gen), torch.randn(2, n, d, generator=gen)  # common random numbers
    rhos = [0.0, 0.2, 0.4, 0.6, 0.8]
    est = {name: [] for name in BOUNDS}
    for rho in rhos:
        for name, bound in BOUNDS.items():
            est[name].append(np.mean([bound(cosine_scores(*correlated_pairs(rho, x[b], noise[b]), 0.1)).item()
                                      for b in range(2)]))
    for name, values in est.items():
        assert all(b > a for a, b in zip(values, values[1:])), (name, values)
    for rho, dv, nce in zip(rhos, est["cos-DV"], est["InfoNCE"]):
        true_mi = -d / 2 * math.log(1 - rho**2)  # the fixed critic's estimate is a lower bound on it
        assert dv <= true_mi
        assert nce <= min(true_mi, math.log(n))
