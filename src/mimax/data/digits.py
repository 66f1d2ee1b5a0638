"""scikit-learn's bundled handwritten digits (UCI optical recognition, 1,797 8x8 images, 10 classes):
real images with no download, for instant runs. Pixel values 0..16 are stored as uint8 round(v * 255 / 16).
The test split is a fixed stratified 25% (``train_test_split(random_state=0)``), the same for every seed."""

from __future__ import annotations

import numpy as np
import torch

from mimax.data.images import ImageSplit, build_image_bundle


def load_digits_splits() -> tuple[ImageSplit, ImageSplit]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = digits.target.astype(np.int64)
    tr_x, te_x, tr_y, te_y = train_test_split(images, labels, test_size=0.25, random_state=0, stratify=labels)
    return (ImageSplit(1, images=torch.from_numpy(tr_x), labels=torch.from_numpy(tr_y)),
            ImageSplit(1, images=torch.from_numpy(te_x), labels=torch.from_numpy(te_y)))


def build_digits(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1):
    train, test = load_digits_splits()
    return build_image_bundle("Digits", train, test, 10, cfg, device, seed, rank=rank, world=world)
