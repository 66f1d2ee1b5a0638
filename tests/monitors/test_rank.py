"""RankMe, LiDAR, alpha-ReQ, alignment and uniformity against direct NumPy computations of their papers'
definitions, and their limiting cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mimax.monitors.collapse import effective_rank, normalized_embedding_std
from mimax.monitors.rank import alignment, alpha_req, geometry, lidar, rankme, spectrum, uniformity, unit_rows


def np_entropy_rank(values, eps):
    p = values / values.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def np_rankme(z, eps=1e-7):
    return np_entropy_rank(np.linalg.svd(z, compute_uv=False), eps)


def np_lidar(views, delta=1e-4, eps=1e-7):
    n, q, d = views.shape
    mu_i = views.mean(axis=1)
    mu = mu_i.mean(axis=0)
    s_b = sum(np.outer(m - mu, m - mu) for m in mu_i) / n
    s_w = sum(np.outer(views[i, k] - mu_i[i], views[i, k] - mu_i[i]) for i in range(n) for k in range(q)) / (n * q)
    s_w = s_w + delta * np.eye(d)
    w, vecs = np.linalg.eigh(s_w)
    inv_sqrt = vecs @ np.diag(w ** -0.5) @ vecs.T
    lam = np.clip(np.linalg.eigvalsh(inv_sqrt @ s_b @ inv_sqrt), 0, None)
    return np_entropy_rank(lam, eps)


def np_alpha(z):
    lam = np.sort(np.linalg.eigvalsh(np.cov(z.T)))[::-1]
    lam = lam[lam > 1e-10 * lam[0]]
    k = np.arange(1, len(lam) + 1)
    slope, _ = np.polyfit(np.log(k), np.log(lam), 1)
    return -slope


def unit(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def np_alignment(u, v):
    return float(np.mean(np.sum((unit(u) - unit(v)) ** 2, axis=1)))


def np_uniformity(z, t=2.0):
    zn = unit(z)
    vals = [np.exp(-t * np.sum((zn[i] - zn[j]) ** 2)) for i in range(len(z)) for j in range(len(z)) if i != j]
    return float(np.log(np.mean(vals)))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 8)) @ np.diag([3, 2, 1, 1, 0.5, 0.3, 0.1, 0.05])
    return z, z + 0.3 * rng.normal(size=z.shape)


def test_against_numpy(data):
    u, v = data
    tu, tv = torch.tensor(u), torch.tensor(v)
    assert rankme(tu).item() == pytest.approx(np_rankme(u), rel=1e-9)
    assert lidar(torch.stack([tu, tv], 1)).item() == pytest.approx(np_lidar(np.stack([u, v], 1)), rel=1e-7)
    assert alpha_req(tu).item() == pytest.approx(np_alpha(u), rel=1e-9)
    assert alignment(tu, tv).item() == pytest.approx(np_alignment(u, v), rel=1e-9)
    assert uniformity(tu).item() == pytest.approx(np_uniformity(u), rel=1e-9)
    assert uniformity(tu, t=30.0).item() == pytest.approx(np_uniformity(u, t=30.0), rel=1e-9)  # logsumexp path
    assert uniformity(tu.float(), t=30.0).item() == pytest.approx(np_uniformity(u, t=30.0), rel=1e-5)
    g = geometry(tu.float(), tv.float())
    assert g["uniformity"] == pytest.approx((np_uniformity(u) + np_uniformity(v)) / 2, rel=1e-5)
    assert set(spectrum(tu)) == {"rankme", "alpha_req"}


def test_limiting_cases():
    rng = np.random.default_rng(1)
    iso = torch.tensor(rng.normal(size=(4000, 6)))
    assert rankme(iso).item() == pytest.approx(6, rel=0.02)  # isotropic: full rank
    line = torch.tensor(rng.normal(size=(100, 1)) * np.ones((1, 6)))
    assert rankme(line).item() == pytest.approx(1, rel=1e-3)  # one direction
    assert rankme(torch.zeros(10, 4)).item() == 0
    # a power-law spectrum lambda_k = k^-2 (std k^-1) is recovered by alpha-ReQ
    pl = torch.tensor(rng.normal(size=(200_000, 5)) / np.arange(1, 6))
    assert alpha_req(pl).item() == pytest.approx(2.0, abs=0.02)
    assert np.isnan(alpha_req(torch.ones(10, 3)).item())
    same = torch.tensor(rng.normal(size=(50, 4)))
    assert alignment(same, 2 * same).item() == pytest.approx(0, abs=1e-12)  # scale-free on the sphere
    assert uniformity(torch.ones(20, 3)).item() == pytest.approx(0, abs=1e-12)  # collapse: the maximum
    # LiDAR: views that differ by tiny noise make every sample its own class -> near-full rank;
    # views unrelated to the sample -> a small one
    base = rng.normal(size=(500, 5))
    tight = lidar(torch.tensor(np.stack([base, base + 1e-3 * rng.normal(size=base.shape)], 1))).item()
    loose = lidar(torch.tensor(np.stack([base, rng.normal(size=base.shape)], 1))).item()
    assert tight > 4.5 and loose < tight


def test_zero_embeddings_are_collapse_not_the_most_uniform():
    # F.normalize maps a zero row to 0, and the identity ||a - b||^2 = 2 - 2 a.b (unit vectors only) then gave
    # -2t, the most uniform value there is, for all-zero embeddings
    assert uniformity(torch.zeros(10, 3)).item() == pytest.approx(0, abs=1e-12)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(30, 4))
    z[[2, 7]] = 0  # zero rows count as the point 0: ||a - 0||^2 = 1
    zn = np.where(np.linalg.norm(z, axis=1, keepdims=True) > 0, z, 1) / np.maximum(
        np.linalg.norm(z, axis=1, keepdims=True), 1e-300)
    zn[[2, 7]] = 0
    vals = [np.exp(-2 * np.sum((zn[i] - zn[j]) ** 2)) for i in range(30) for j in range(30) if i != j]
    assert uniformity(torch.tensor(z)).item() == pytest.approx(float(np.log(np.mean(vals))), rel=1e-9)


@pytest.mark.parametrize("scale", [1e-30, 1e-14, 1e20, 1e30, 1e160])
def test_direction_monitors_do_not_depend_on_the_scale(data, scale):
    # uniformity normalized in float32 (norms overflow above ~1e19: rows became 0, uniformity -4) and every
    # F.normalize left rows shorter than its eps = 1e-12 short of unit length (uniformity -4, alignment 3e-5)
    u, v = data
    tu, tv = torch.tensor(u * scale), torch.tensor(v * scale)
    assert unit_rows(tu).norm(dim=1).numpy() == pytest.approx(np.ones(len(u)), rel=1e-12)
    assert uniformity(tu).item() == pytest.approx(np_uniformity(u), rel=1e-9)
    assert alignment(tu, tv).item() == pytest.approx(np_alignment(u, v), rel=1e-9)
    assert normalized_embedding_std(tu).item() == pytest.approx(float(unit(u).std(0, ddof=1).mean()), rel=1e-9)
    assert effective_rank(tu).item() == pytest.approx(effective_rank(torch.tensor(u)).item(), rel=1e-9)
    assert alpha_req(tu).item() == pytest.approx(alpha_req(torch.tensor(u)).item(), rel=1e-9)
    if scale < 1e19:  # within float32's range once normalized in float64
        assert uniformity(tu.float()).item() == pytest.approx(np_uniformity(u), rel=1e-5)


def test_shape_errors():
    with pytest.raises(ValueError, match="views must be"):
        lidar(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="equal shapes"):
        alignment(torch.zeros(5, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        rankme(torch.zeros(5))


def test_lidar_of_a_tiny_wide_or_broken_monitor_set_is_a_value_or_nan_never_an_error():
    # 4 samples x 2 views of 512-d features (a 4-image monitor set through a ResNet): degenerate scatter
    rng = np.random.default_rng(3)
    views = torch.tensor(rng.normal(size=(4, 2, 512)))
    value = lidar(views).item()
    assert math.isnan(value) or 1 <= value <= 4
    views[1, 0, 7] = float("nan")
    assert math.isnan(lidar(views).item())


def test_effective_rank_of_a_diverged_embedding_is_nan_not_a_linalg_error():
    # a run going on after skipped non-finite steps (--on_nan skip) fed NaN embeddings to the collapse monitor,
    # and LAPACK's "failed to converge" ended the run in a traceback
    from mimax.monitors.collapse import effective_rank

    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    z[0, 0] = float("nan")
    assert math.isnan(effective_rank(z).item())
