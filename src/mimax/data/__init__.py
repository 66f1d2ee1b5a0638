"""Datasets. ``DATASETS`` maps a ``--dataset`` name to a builder ``(cfg, device, seed) -> DataBundle``;
``DATA_CHECKS`` maps it to a cheap check of the data's location and layout, run by config validation
before any work starts (raises :class:`mimax.errors.DataError`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mimax.data import cifar, folders, idx, imagenet100, tiny_imagenet
from mimax.data.base import DataBundle, ViewLoader
from mimax.data.digits import build_digits
from mimax.data.gaussian import build_gaussian

DATASETS: dict[str, Callable[..., DataBundle]] = {"Gaussian": build_gaussian}
# --- image datasets (issue 6) ---
DATASETS.update({
    "CIFAR10": cifar.build_cifar, "CIFAR100": cifar.build_cifar,
    "TinyImageNet": tiny_imagenet.build_tiny_imagenet, "ImageNet100": imagenet100.build_imagenet100,
    "FashionMNIST": idx.build_idx, "MNIST": idx.build_idx, "Digits": build_digits,
    "ImageFolder": folders.build_image_folder, "Folder": folders.build_folder,
})
DATA_CHECKS: dict[str, Callable] = {
    "CIFAR10": cifar.locate, "CIFAR100": cifar.locate, "TinyImageNet": tiny_imagenet.locate,
    "ImageNet100": imagenet100.locate, "FashionMNIST": idx.locate, "MNIST": idx.locate,
    "ImageFolder": folders.locate_image_folder, "Folder": folders.locate_folder,
}
IMAGE_DATASETS = frozenset(DATASETS) - {"Gaussian"}


def check_data(cfg) -> None:
    """Check the dataset's location and layout (no-op for embedded data)."""
    check = DATA_CHECKS.get(cfg.dataset)
    if check is not None:
        check(cfg)


def build_data(cfg, device: torch.device, seed: int) -> DataBundle:
    return DATASETS[cfg.dataset](cfg, device, seed)


__all__ = ["DATASETS", "DATA_CHECKS", "IMAGE_DATASETS", "DataBundle", "ViewLoader", "build_data", "check_data"]
