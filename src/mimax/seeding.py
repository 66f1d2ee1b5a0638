"""Every seed mimax derives, in one place.

A run has one seed s (``--seed`` + the run's index). What depends on it:

- the global generators (Python, NumPy, torch) at set-up, which initialize the model: :func:`seed_everything`;
- the order of epoch e: a permutation drawn from :func:`epoch_seed` ``(s, e)``; the Gaussian loader also
  draws that epoch's view noise from it;
- the views of image i in epoch e (per-image torchvision path): torch's RNG is seeded with
  :func:`sample_seed` ``(s, e, i)`` while the two views are drawn;
- the per-image view parameters of step k of epoch e (batched path, ``--gpu_augment``): one table of
  ``--batch_size`` rows drawn from :func:`step_seed` ``(s, e, k)``; row j belongs to the image at
  position ``k * B + j`` of the epoch's order, and each rank takes its rows.

So the views of image i in epoch e are a function of (s, e, i) alone, whatever the number of workers,
of processes, the worker persistence or the step a resumed run starts from. Sub-seeds are derived
from ``epoch_seed`` by :func:`derive`, a SplitMix64 hash (Steele et al., 2014, "Fast splittable
pseudorandom number generators"), so distinct (purpose, e, i) never share a stream.

Fixed seeds, the same for every run: the ``--train_subset``/``--test_subset`` choice and held-out
splits (:data:`SUBSET_SEED`), the MI-monitor view pairs (:data:`MONITOR_VIEW_SEED`) and the MI
monitor's shuffled baseline (:data:`SHUFFLE_SEED`).
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch

SUBSET_SEED = 1_234_567
MONITOR_VIEW_SEED = 2_147_483_000
SHUFFLE_SEED = 1_234_567
EPOCH_STRIDE = 1_000_003  # odd: seed * EPOCH_STRIDE + epoch keeps (seed, epoch) apart for epoch < stride
_MASK = 2**64 - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def derive(root: int, purpose: str, *parts: int) -> int:
    """A 63-bit seed from ``root``, a purpose name and integers: ``h <- splitmix64(h xor x)`` over
    ``(root, crc32(purpose), *parts)``."""
    h = 0
    for x in (root, zlib.crc32(purpose.encode()), *parts):
        h = _splitmix64(h ^ (x & _MASK))
    return h >> 1


def epoch_seed(seed: int, epoch: int) -> int:
    """``seed * 1_000_003 + epoch``: the seed of epoch ``epoch``'s order (and of the Gaussian views)."""
    return seed * EPOCH_STRIDE + epoch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the per-image views of image ``index`` in ``epoch``."""
    return derive(epoch_seed(seed, epoch), "sample", index)


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of the batched path's view-parameter table of step ``step`` of ``epoch``."""
    return derive(epoch_seed(seed, epoch), "step", step)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(seed)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the ``n`` training images in ``epoch``: a permutation drawn on the CPU."""
    return torch.randperm(n, generator=generator(epoch_seed(seed, epoch)))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (model initialization draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
