"""The Gaussian-mixture data of docs/methods.md §7."""

from __future__ import annotations

import torch

from mimax.config import config_from_args
from mimax.data import build_data


def bundle(*args, seed=0):
    cfg = config_from_args(["--dataset", "Gaussian", "--batch_size", "100", *args])
    return cfg, build_data(cfg, torch.device("cpu"), seed)


def test_sizes_shapes_and_means_on_the_sphere():
    cfg, data = bundle("--gm_clusters", "4", "--gm_dim", "6", "--gm_radius", "2.5", "--gm_train_size", "300",
                       "--gm_test_size", "50", "--gm_monitor_size", "40")
    means = data.extras["cluster_means"]
    assert means.shape == (4, 6)
    assert torch.allclose(means.norm(dim=1), torch.full((4,), 2.5))
    assert len(data.probe_train) == 300 and len(data.probe_test) == 50
    assert data.monitor_views[0].shape == (40, 6) and data.input_shape == (6,) and data.num_classes == 4
    x, y = data.probe_train.tensors
    assert set(y.tolist()) == {0, 1, 2, 3}
    # within-cluster spread matches sigma
    resid = x - means[y]
    assert abs(resid.std().item() - 1.0) < 0.1


def test_mixture_is_fixed_by_the_data_seed_and_views_by_the_run_seed():
    _, a = bundle()
    _, b = bundle(seed=1)
    _, c = bundle("--gm_data_seed", "3")
    assert torch.equal(a.extras["cluster_means"], b.extras["cluster_means"])
    assert not torch.equal(a.extras["cluster_means"], c.extras["cluster_means"])
    assert torch.equal(a.monitor_views[0], b.monitor_views[0])  # monitor views: fixed for all runs
    ea = list(a.train_views.epoch(1))
    assert all(torch.equal(p, q) for (p, _), (q, _) in zip(ea, a.train_views.epoch(1)))  # same (seed, epoch)
    assert not torch.equal(ea[0][0], next(iter(a.train_views.epoch(2)))[0])
    assert not torch.equal(ea[0][0], next(iter(b.train_views.epoch(1)))[0])


def test_views_are_noisy_copies_with_the_configured_noise():
    _, data = bundle("--gm_view_noise", "0.5", "--gm_train_size", "2000")
    x_a, x_b = next(iter(data.train_views.epoch(1)))
    assert x_a.shape == (100, 16) and len(data.train_views) == 20
    diff = (x_a - x_b).std().item()  # difference of two independent N(0, 0.25) noises: std 0.5*sqrt(2)
    assert abs(diff - 0.5 * 2 ** 0.5) < 0.05
