"""The one view loader of every image dataset, born per rank.

:class:`ImageViewLoader` yields one rank's share of every step's two-view batch, on the training device:

- **Order.** Epoch e's order is a permutation of the N training images drawn from the run seed and e
  (:func:`mimax.seeding.epoch_order`), the same on every rank; an epoch has ``N // B`` steps
  (``--batch_size`` B, the global batch; the last partial batch is dropped). Step k's global batch is
  the images at positions ``[k B, (k + 1) B)``; rank r of W takes positions
  ``[k B + r b, k B + (r + 1) b)``, ``b = B / W``. So the concatenation of the ranks' batches, in rank
  order, is exactly the single-process batch, and each rank reads, decodes and augments only its b pairs.
- **Views** depend only on (run seed, e, image index): per-image torchvision views in DataLoader workers
  seed torch's RNG per item (:func:`mimax.seeding.sample_seed`); batched views (``--gpu_augment``) draw
  step k's parameter table of B rows from :func:`mimax.seeding.step_seed` and apply this rank's rows on
  the training device. Neither depends on the number of workers, of ranks, on worker persistence or on
  the step an epoch starts from.
- **Start anywhere.** ``epoch(e, start=k)`` yields exactly the batches k, k+1, ... of the uninterrupted
  epoch; nothing is loaded for the steps before k.
- **Speed.** Persistent workers (no re-fork per epoch), ``prefetch_factor`` batches in flight per worker,
  pinned host memory and non-blocking copies on CUDA. In-memory images on the batched path are moved to
  the device once and indexed there; image files on the batched path are decoded in the workers to a
  fixed square and augmented on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from mimax import seeding
from mimax.data.base import per_rank_batch
from mimax.data.views import BatchedViews
from mimax.errors import DataError
from mimax.runtime.signals import leave_preemption_to_the_main_process, track_workers


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """Host-to-device copy; asynchronous when the source is pinned (the DataLoader pins on CUDA)."""
    return x.to(device, non_blocking=x.is_pinned())


class RankSteps:
    """Which images rank ``rank`` of ``world`` loads at each step (see the module docstring)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside 0..{world - 1}")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_rank = per_rank_batch(batch_size, world)

    def __len__(self) -> int:
        return self.n // self.batch_size

    def rows(self) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a global batch."""
        return self.rank * self.per_rank, (self.rank + 1) * self.per_rank

    def order(self, epoch: int) -> Tensor:
        """The order of the training images in ``epoch`` (the same on every rank)."""
        return seeding.epoch_order(self.seed, epoch, self.n)

    def span(self, step: int) -> slice:
        """The positions of ``order`` this rank loads at ``step``."""
        lo, hi = self.rows()
        return slice(step * self.batch_size + lo, step * self.batch_size + hi)

    def steps(self, epoch: int, start: int = 0) -> Iterator[tuple[int, list[int]]]:
        """``(step, this rank's image indices)`` for the steps ``start, start+1, ...`` of ``epoch``."""
        order = self.order(epoch)
        for step in range(max(0, start), len(self)):
            yield step, order[self.span(step)].tolist()


class _EpochBatches(Sampler):
    """Batch sampler of the DataLoader: this rank's ``(index, sample seed)`` lists for the epoch and start
    set by :meth:`set` (read when the DataLoader starts iterating, so persistent workers see it)."""

    def __init__(self, steps: RankSteps):
        self.plan, self.epoch, self.start = steps, 0, 0

    def set(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, len(self.plan) - self.start)

    def __iter__(self):
        seed, epoch = self.plan.seed, self.epoch
        for _, indices in self.plan.steps(epoch, self.start):
            yield [(i, seeding.sample_seed(seed, epoch, i)) for i in indices]


class SeededItems(Dataset):
    """``items[(i, s)]``: ``load(i)`` with torch's global RNG seeded with ``s`` (torchvision transforms
    draw from it), inside ``fork_rng`` so the caller's RNG is left as it was."""

    def __init__(self, load: Any, size: int):
        self.load, self.size = load, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.load(index)


class ImageViewLoader:
    """A :class:`~mimax.data.base.ViewLoader` of one rank (module docstring).

    Exactly one of:
    - ``pairs``: ``pairs(i) -> (view_a, view_b)``, per-image views drawn from torch's global RNG (run in
      DataLoader workers, seeded per item);
    - ``batched`` with ``images``: a uint8 (N, C, H, W) tensor, moved to ``device`` once, augmented there;
    - ``batched`` with ``decode``: ``decode(i) -> uint8 (C, S, S)`` (run in DataLoader workers), the batch
      augmented on ``device``.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device, *, rank: int = 0, world: int = 1,
                 num_workers: int = 0, pairs: Any = None, batched: BatchedViews | None = None,
                 images: Tensor | None = None, decode: Any = None, decoded_shape: Sequence[int] | None = None,
                 prefetch_factor: int = 4):
        if (pairs is None) == (batched is None) or (batched is not None and (images is None) == (decode is None)):
            raise ValueError("give pairs, or batched views with images or decode")
        self.plan = RankSteps(n, batch_size, seed, rank, world)
        self.device, self.batched = device, batched
        self.images = images.to(device) if images is not None else None
        self.shape = tuple(images.shape[1:]) if images is not None else tuple(decoded_shape or ())
        self.loader: DataLoader | None = None
        self.generation = 0
        if self.images is None:
            self.sampler = _EpochBatches(self.plan)
            workers = dict(persistent_workers=True, prefetch_factor=prefetch_factor) if num_workers > 0 else {}
            self.loader = track_workers(DataLoader(
                SeededItems(pairs if pairs is not None else decode, n), batch_sampler=self.sampler,
                num_workers=num_workers, pin_memory=device.type == "cuda",
                worker_init_fn=leave_preemption_to_the_main_process,
                generator=seeding.generator(seeding.derive(seed, "workers")), **workers))

    def __len__(self) -> int:
        return len(self.plan)

    def params(self, epoch: int, step: int) -> tuple[Any, Any]:
        """This rank's rows of step ``step``'s view-parameter table (batched path), on the device."""
        height, width = self.shape[-2:]
        table = self.batched.draw(self.plan.batch_size, height, width,
                                  seeding.generator(seeding.step_seed(self.plan.seed, epoch, step)))
        lo, hi = self.plan.rows()
        return tuple(p.rows(lo, hi).to(self.device) for p in table)

    def gather(self, indices: Tensor) -> Tensor:
        """The in-memory images ``indices`` (on the device)."""
        return self.images[indices]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's batches ``start, start+1, ...`` of ``epoch`` (views on the training device). One
        epoch at a time per loader: starting another one ends the previous one."""
        self.generation += 1
        return self._epoch(epoch, max(0, start), self.generation)

    def _epoch(self, epoch: int, start: int, generation: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self.images is not None:
            order = self.plan.order(epoch).to(self.device)  # one copy per epoch, sliced on the device
            for step in range(start, len(self.plan)):
                yield self.batched.apply(self.gather(order[self.plan.span(step)]), self.params(epoch, step))
            return
        self.sampler.set(epoch, start)
        try:
            batches = iter(self.loader)  # persistent workers: drops what an abandoned epoch left in flight
            for step in range(start, len(self.plan)):
                if generation != self.generation:  # the DataLoader now serves another epoch
                    raise RuntimeError("another epoch was started on this view loader while this one ran")
                batch = next(batches)
                if self.batched is not None:
                    yield self.batched.apply(to_device(batch, self.device), self.params(epoch, step))
                else:
                    yield to_device(batch[0], self.device), to_device(batch[1], self.device)
        except DataError as exc:
            raise DataError.one_line(exc) from None
