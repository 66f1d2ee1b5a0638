"""Separation score on hand-made embeddings (docs/methods.md §7)."""

from __future__ import annotations

import math

import pytest
import torch

from mimax.experiments.trajectories import separation


def clusters_on_circle(k: int, spread: float, n: int = 50, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    angles = torch.arange(k).repeat_interleave(n) * (2 * math.pi / k)
    angles = angles + spread * torch.randn(k * n, generator=gen)
    z = torch.stack([angles.cos(), angles.sin()], dim=1) * 3.0  # scale must not matter
    return z, torch.arange(k).repeat_interleave(n)


def test_well_separated_clusters():
    z, y = clusters_on_circle(4, spread=0.0)
    sep = separation(z, y)
    assert sep["min_center_angle"] == pytest.approx(math.pi / 2, abs=1e-6)
    assert sep["within_spread"] == pytest.approx(0.0, abs=1e-6)


def test_spread_is_the_mean_angle_to_the_center():
    z, y = clusters_on_circle(4, spread=0.1, n=400)
    sep = separation(z, y)
    # |N(0, 0.1^2)| has mean 0.1 * sqrt(2/pi); centers stay ~90 degrees apart
    assert sep["within_spread"] == pytest.approx(0.1 * math.sqrt(2 / math.pi), rel=0.1)
    assert sep["min_center_angle"] == pytest.approx(math.pi / 2, abs=0.05)
    assert sep["ratio"] == pytest.approx(sep["min_center_angle"] / sep["within_spread"])


def test_collapsed_embeddings_have_no_separation():
    y = torch.arange(5).repeat_interleave(20)
    z = torch.tensor([[1.0, 2.0, 0.5]]).repeat(100, 1) + 1e-6 * torch.randn(100, 3)
    sep = separation(z, y)
    assert sep["min_center_angle"] < 1e-3
    good = separation(*clusters_on_circle(5, spread=0.2))
    assert good["ratio"] > 10 * sep["ratio"]


def test_merged_clusters_give_a_small_minimum_angle():
    z, y = clusters_on_circle(4, spread=0.05)
    y = y.clone()
    z = z.clone()
    z[y == 1] = z[y == 0]  # clusters 0 and 1 merge
    assert separation(z, y)["min_center_angle"] < 0.05


def test_separation_rejects_bad_shapes():
    with pytest.raises(ValueError, match="labels"):
        separation(torch.randn(10, 2), torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="two clusters"):
        separation(torch.randn(10, 2), torch.zeros(10, dtype=torch.long))
