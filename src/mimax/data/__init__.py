"""Datasets. ``DATASETS`` maps a ``--dataset`` name to a builder ``(cfg, device, seed) -> DataBundle``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mimax.data.base import DataBundle, ViewLoader
from mimax.data.gaussian import build_gaussian

DATASETS: dict[str, Callable[..., DataBundle]] = {"Gaussian": build_gaussian}


def build_data(cfg, device: torch.device, seed: int) -> DataBundle:
    return DATASETS[cfg.dataset](cfg, device, seed)


__all__ = ["DATASETS", "DataBundle", "ViewLoader", "build_data"]
