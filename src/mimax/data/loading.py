"""Generic input-pipeline pieces every view loader can use: per-rank sharding, a DataLoader-based view
loader (DistributedSampler, per-epoch reseeding, persistent workers, pinned memory, non-blocking copies)
and the host-to-device copy.

Sharding contract (see :func:`shard_views`): a :class:`~mimax.data.base.ViewLoader` yields GLOBAL batches
(``--batch_size`` pairs). In a W-process run the engine replaces it by ``loader.shard(rank, W)`` when the
loader defines ``shard`` (it then loads only this rank's ``batch_size / W`` pairs, e.g. through a
DistributedSampler), and otherwise by :class:`SlicedViews`, which keeps this rank's slice of every global
batch. Slicing is exact (the union over ranks is the single-process batch) and is what the Gaussian
loader uses, since its batches are generated on the device at negligible cost.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

SEED_STRIDE = 1_000_003  # odd multiplier that keeps (seed, epoch, index) seeds apart


def per_rank_batch(batch_size: int, world: int) -> int:
    """``batch_size / world``; the global batch must split evenly over the ranks (config validation
    refuses other launches before any work)."""
    if batch_size % world:
        raise ValueError(f"the global batch {batch_size} must be divisible by the number of processes ({world})")
    return batch_size // world


class SlicedViews:
    """This rank's rows ``[rank * b, (rank + 1) * b)`` of every global batch of ``loader`` (b = B / W)."""

    def __init__(self, loader: Any, rank: int, world: int, batch_size: int):
        self.loader, self.rank, self.size = loader, rank, per_rank_batch(batch_size, world)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        lo, hi = self.rank * self.size, (self.rank + 1) * self.size
        for x_a, x_b in (self.loader.epoch(epoch, start=start) if start else self.loader.epoch(epoch)):
            yield x_a[lo:hi], x_b[lo:hi]


def shard_views(loader: Any, rank: int, world: int, batch_size: int) -> Any:
    """The view loader of one rank: the loader's own ``shard(rank, world)`` if it has one, else slices."""
    if world == 1:
        return loader
    if hasattr(loader, "shard"):
        return loader.shard(rank, world)
    return SlicedViews(loader, rank, world, batch_size)


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """Host-to-device copy; asynchronous when the source is pinned (the DataLoader pins on CUDA)."""
    return x.to(device, non_blocking=x.is_pinned())


class SkipFirst(Sampler):
    """``sampler`` without its first ``skip`` indices: the DataLoader then loads only what follows. Used
    with a multiple of the batch size, the remaining batches are exactly the original later batches."""

    def __init__(self, sampler: Sampler, skip: int = 0):
        self.sampler, self.skip = sampler, skip

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)


class _SeededIndices(Sampler):
    """Yields ``(index, seed)`` with ``seed`` a function of (run seed, epoch, index) only, so per-sample
    augmentations do not depend on worker count, worker persistence, rank or resumption. ``skip``
    leaves out the first indices of the epoch (resuming mid-epoch)."""

    def __init__(self, sampler: DistributedSampler, seed: int):
        self.sampler, self.seed, self.epoch, self.skip = sampler, seed, 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)

    def __iter__(self):
        base = (self.seed * SEED_STRIDE + self.epoch) * SEED_STRIDE
        return ((i, (base + i) % (2**63 - 1)) for i in itertools.islice(iter(self.sampler), self.skip, None))


class _SeededItems(Dataset):
    """``dataset[index]`` with torch's RNG (the one torchvision transforms draw from) seeded per sample."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        torch.manual_seed(seed)
        return self.dataset[index]


class DataLoaderViews:
    """A :class:`~mimax.data.base.ViewLoader` over a map-style dataset, through a torch DataLoader.

    - ``dataset[i]`` returns either a pair ``(view_a, view_b)`` (per-sample augmentation in the workers)
      or one tensor, turned into two views on the training device by ``on_device(x, generator)``
      (batched augmentation, ``--gpu_augment``).
    - Order: a DistributedSampler over ``world`` ranks, reseeded per epoch (``set_epoch``) from the run
      seed, ``drop_last``; with ``world == 1`` it is a plain seeded shuffle. Per-sample augmentation seeds
      depend only on (seed, epoch, index), so runs are reproducible and resumable with any worker setup.
    - Speed: persistent workers (no re-fork per epoch), pinned host memory and non-blocking copies when
      the device is CUDA, ``prefetch_factor`` batches in flight per worker.
    ``batch_size`` is the global batch; each rank loads ``batch_size / world`` pairs per step.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device, num_workers: int = 0,
                 on_device: Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]] | None = None,
                 rank: int = 0, world: int = 1, prefetch_factor: int = 4, collate_fn: Callable | None = None):
        self.dataset, self.batch_size, self.seed, self.device = dataset, batch_size, seed, device
        self.num_workers, self.on_device, self.rank, self.world = num_workers, on_device, rank, world
        self.prefetch_factor, self.collate_fn = prefetch_factor, collate_fn
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.sampler = _SeededIndices(sampler, seed)
        workers = dict(persistent_workers=True, prefetch_factor=prefetch_factor) if num_workers > 0 else {}
        self.loader = DataLoader(_SeededItems(dataset), batch_size=per_rank_batch(batch_size, world),
                                 sampler=self.sampler, num_workers=num_workers, drop_last=True,
                                 pin_memory=device.type == "cuda", collate_fn=collate_fn, **workers)

    def __len__(self) -> int:
        return len(self.sampler.sampler) // per_rank_batch(self.batch_size, self.world)

    def shard(self, rank: int, world: int) -> DataLoaderViews:
        return DataLoaderViews(self.dataset, self.batch_size, self.seed, self.device, self.num_workers,
                               self.on_device, rank, world, self.prefetch_factor, self.collate_fn)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``start, start+1, ...`` of ``epoch``: the sampler skips the first ``start`` batches'
        indices (nothing is loaded for them); on-device views replay their generator draws on zeros."""
        b = per_rank_batch(self.batch_size, self.world)
        self.sampler.set_epoch(epoch, skip=start * b)
        gen = None
        if self.on_device is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed((self.seed * SEED_STRIDE + epoch) * SEED_STRIDE + self.rank)
            if start:
                shape = tuple(self.dataset[0].shape)  # one decoded item fixes the batch shape
                blank = torch.zeros((b, *shape), dtype=self.dataset[0].dtype, device=self.device)
                for _ in range(min(start, len(self))):
                    self.on_device(blank, gen)
        for batch in self.loader:
            if self.on_device is not None:
                yield self.on_device(to_device(batch, self.device), gen)
            else:
                x_a, x_b = batch
                yield to_device(x_a, self.device), to_device(x_b, self.device)
