"""Datasets. ``DATASETS`` maps a ``--dataset`` name to a builder ``(cfg, device, seed, rank, world) ->
DataBundle`` (the bundle of one rank of a ``world``-process run: its view loader loads that rank's share);
``DATA_CHECKS`` maps it to a cheap check of the data's location and layout, run by config validation
before any work starts (raises :class:`mimax.errors.DataError`). Image modules are imported on first use
(torchvision costs seconds at start-up and vector-data runs never need it)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from mimax.data.base import DataBundle, ViewLoader
from mimax.data.gaussian import build_gaussian


def _lazy(module: str, name: str) -> Callable:
    def call(*args, **kwargs):
        return getattr(importlib.import_module(f"mimax.data.{module}"), name)(*args, **kwargs)

    call.__name__ = name
    return call


DATASETS: dict[str, Callable[..., DataBundle]] = {"Gaussian": build_gaussian}
# --- image datasets (docs/data.md) ---
DATASETS.update({
    "CIFAR10": _lazy("cifar", "build_cifar"), "CIFAR100": _lazy("cifar", "build_cifar"),
    "TinyImageNet": _lazy("tiny_imagenet", "build_tiny_imagenet"),
    "ImageNet100": _lazy("imagenet100", "build_imagenet100"),
    "FashionMNIST": _lazy("idx", "build_idx"), "MNIST": _lazy("idx", "build_idx"),
    "Digits": _lazy("digits", "build_digits"),
    "ImageFolder": _lazy("folders", "build_image_folder"), "Folder": _lazy("folders", "build_folder"),
})
DATA_CHECKS: dict[str, Callable] = {
    "CIFAR10": _lazy("cifar", "locate"), "CIFAR100": _lazy("cifar", "locate"),
    "TinyImageNet": _lazy("tiny_imagenet", "locate"), "ImageNet100": _lazy("imagenet100", "locate"),
    "FashionMNIST": _lazy("idx", "locate"), "MNIST": _lazy("idx", "locate"),
    "ImageFolder": _lazy("folders", "locate_image_folder"), "Folder": _lazy("folders", "locate_folder"),
}
# The layouts of the user-folder datasets, as messages name them (here, not in mimax.data.folders, so that
# config validation can name them without importing torchvision)
CLASS_TREE = "one sub-folder of images per class (DATA_DIR/train/<class>/*.jpg and DATA_DIR/val/<class>/, " \
             "or DATA_DIR/<class>/*.jpg)"
FLAT = "a folder of image files (searched recursively)"
IMAGE_DATASETS = frozenset(DATASETS) - {"Gaussian"}
DOWNLOADABLE = frozenset({"CIFAR10", "CIFAR100", "MNIST", "FashionMNIST"})  # what --download fetches (torchvision)
DATASET_CHANNELS = {"FashionMNIST": 1, "MNIST": 1, "Digits": 1}  # image datasets not listed are RGB


def check_data(cfg) -> None:
    """Check the dataset's location and layout (no-op for embedded data)."""
    check = DATA_CHECKS.get(cfg.dataset)
    if check is not None:
        check(cfg)


def build_data(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1) -> DataBundle:
    """The data of rank ``rank`` of a ``world``-process run: ``train_views`` yields this rank's
    ``batch_size / world`` pairs of every step (docs/performance.md, "Input pipeline")."""
    return DATASETS[cfg.dataset](cfg, device, seed, rank=rank, world=world)


__all__ = ["DATASETS", "DATA_CHECKS", "DATASET_CHANNELS", "DOWNLOADABLE", "IMAGE_DATASETS", "DataBundle", "ViewLoader",
           "build_data", "check_data"]
