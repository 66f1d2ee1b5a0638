"""The DataLoader-based view loader: per-rank sharding (DistributedSampler), per-epoch reseeding,
augmentation seeds independent of workers, the on-device batched-augmentation path."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from mimax.data.loading import DataLoaderViews, shard_views

CPU = torch.device("cpu")


class NoisyPairs(Dataset):
    """Item i: two views ``(i + noise, i + noise)`` drawn from torch's global RNG, like torchvision transforms."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int):
        base = torch.full((2,), float(i))
        return base + torch.rand(2), base + torch.rand(2)


def _epoch(loader, epoch):
    return [(a.clone(), b.clone()) for a, b in loader.epoch(epoch)]


def test_epochs_are_reproducible_reshuffled_and_independent_of_workers():
    single = DataLoaderViews(NoisyPairs(), batch_size=4, seed=3, device=CPU, num_workers=0)
    workers = DataLoaderViews(NoisyPairs(), batch_size=4, seed=3, device=CPU, num_workers=2)
    assert len(single) == len(workers) == 5
    e1 = _epoch(single, 1)
    for (a, b), (c, d) in zip(e1, _epoch(workers, 1)):  # persistent workers, same samples and augmentations
        assert torch.equal(a, c) and torch.equal(b, d)
    for (a, b), (c, d) in zip(e1, _epoch(single, 1)):  # the same epoch again: identical
        assert torch.equal(a, c) and torch.equal(b, d)
    order = lambda batches: torch.cat([a[:, 0].floor() for a, _ in batches]).tolist()  # noqa: E731
    assert sorted(order(e1)) == sorted(map(float, range(20)))  # each item once per epoch
    assert order(_epoch(single, 2)) != order(e1)  # reshuffled per epoch
    assert not torch.equal(e1[0][0], e1[0][1])  # two different views


def test_shards_partition_the_epoch_and_split_the_batch():
    loader = DataLoaderViews(NoisyPairs(), batch_size=4, seed=0, device=CPU)
    shards = [shard_views(loader, r, 2, 4) for r in range(2)]
    items = []
    for shard in shards:
        batches = _epoch(shard, 5)
        assert len(shard) == len(batches) == 5 and all(a.shape == (2, 2) for a, _ in batches)
        items.append(torch.cat([a[:, 0].floor() for a, _ in batches]).tolist())
    assert not set(items[0]) & set(items[1])
    assert sorted(items[0] + items[1]) == sorted(map(float, range(20)))


def test_on_device_augmentation_gets_a_seeded_generator():
    class Raw(Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            return torch.full((3,), float(i))

    def two_views(x, gen):
        return x + torch.rand(x.shape, generator=gen), x - torch.rand(x.shape, generator=gen)

    loader = DataLoaderViews(Raw(), batch_size=4, seed=1, device=CPU, on_device=two_views)
    first, again = _epoch(loader, 0), _epoch(loader, 0)
    assert len(first) == 3
    for (a, b), (c, d) in zip(first, again):
        assert torch.equal(a, c) and torch.equal(b, d) and (a > b).all()
