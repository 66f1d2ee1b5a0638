"""The controlled Gaussian-mixture data of docs/methods.md §7.

K isotropic clusters in R^d with means drawn uniformly on a sphere of radius R and within-cluster std
sigma. A view of x is ``x + eps``, ``eps ~ N(0, sigma_v^2 I)`` drawn independently per view; with
``--augmentation`` each view is also scaled by a random factor in [0.8, 1.2] (per sample).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from mimax import seeding
from mimax.data.base import DataBundle, per_rank_batch


@dataclass
class GaussianMixture:
    means: Tensor  # (K, d)
    sigma: float

    @classmethod
    def make(cls, clusters: int, dim: int, radius: float, sigma: float, generator: torch.Generator) -> GaussianMixture:
        directions = torch.randn(clusters, dim, generator=generator)
        return cls(radius * directions / directions.norm(dim=1, keepdim=True), sigma)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        labels = torch.randint(len(self.means), (n,), generator=generator)
        x = self.means[labels] + self.sigma * torch.randn(n, self.means.shape[1], generator=generator)
        return x, labels


def make_views(x: Tensor, noise: float, scaling: bool, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two independent noisy views of each row of ``x`` (random draws from ``generator``)."""
    views = []
    for _ in range(2):
        view = x + noise * torch.randn(x.shape, generator=generator, device=x.device)
        if scaling:
            view = view * (0.8 + 0.4 * torch.rand(x.shape[0], 1, generator=generator, device=x.device))
        views.append(view)
    return views[0], views[1]


class GaussianViewLoader:
    """Shuffled batches of two noisy views, generated on the training device (drop_last). Rank ``rank``
    of ``world`` yields its rows ``[rank b, (rank + 1) b)`` (b = batch_size / world) of every global batch:
    generating a whole batch of noise on the device costs next to nothing, and the union over ranks is
    bit-identical to the single-process batch."""

    def __init__(self, x: Tensor, batch_size: int, noise: float, scaling: bool, seed: int, rank: int = 0,
                 world: int = 1):
        self.x, self.batch_size, self.noise, self.scaling, self.seed = x, batch_size, noise, scaling, seed
        b = per_rank_batch(batch_size, world)
        self.rows = slice(rank * b, (rank + 1) * b)

    def __len__(self) -> int:
        return self.x.shape[0] // self.batch_size

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``start, start+1, ...`` of ``epoch``. The noise of batch k comes from one generator after
        batches 0..k-1: skipped batches replay its draws (no views are built), so they come out the same."""
        gen = seeding.generator(seeding.epoch_seed(self.seed, epoch), self.x.device)
        order = torch.randperm(self.x.shape[0], generator=gen, device=self.x.device)
        shape = (self.batch_size, self.x.shape[1])
        for _ in range(min(start, len(self))):
            make_views(torch.empty(shape, device=self.x.device), self.noise, self.scaling, gen)
        for step in range(start, len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            x_a, x_b = make_views(self.x[idx], self.noise, self.scaling, gen)
            yield x_a[self.rows], x_b[self.rows]


def build_gaussian(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1) -> DataBundle:
    """Sample the mixture (fixed by ``--gm_data_seed``) and its train/test/monitor splits."""
    gen = torch.Generator().manual_seed(cfg.gm_data_seed)
    mixture = GaussianMixture.make(cfg.gm_clusters, cfg.gm_dim, cfg.gm_radius, cfg.gm_sigma, gen)
    x_train, y_train = mixture.sample(cfg.gm_train_size, gen)
    x_test, y_test = mixture.sample(cfg.gm_test_size, gen)
    x_mon, y_mon = mixture.sample(cfg.gm_monitor_size, gen)
    monitor_views = make_views(x_mon, cfg.gm_view_noise, cfg.augmentation,
                               seeding.generator(seeding.MONITOR_VIEW_SEED))
    return DataBundle(
        name="Gaussian", input_shape=(cfg.gm_dim,), num_classes=cfg.gm_clusters,
        train_views=GaussianViewLoader(x_train.to(device), cfg.batch_size, cfg.gm_view_noise,
                                       cfg.augmentation, seed, rank, world),
        probe_train=TensorDataset(x_train, y_train), probe_test=TensorDataset(x_test, y_test),
        monitor_views=(monitor_views[0].to(device), monitor_views[1].to(device)), monitor_labels=y_mon,
        extras={"cluster_means": mixture.means, "test_inputs": x_test, "test_labels": y_test},
    )
