"""MNIST and Fashion-MNIST from their IDX files (LeCun et al.'s format), gzipped or not.

``--data_dir`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
and ``t10k-labels-idx1-ubyte``, each optionally ``.gz`` (as distributed, and as Debian's
``dataset-fashion-mnist`` installs them in /usr/share/datasets/fashion-mnist, the FashionMNIST default).
An IDX file is a big-endian header ``0x00 0x00 <type 0x08 = uint8> <ndim>``, ``ndim`` uint32 sizes,
then the values; the images file has ndim 3 (N, 28, 28), the labels file ndim 1 (N,).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from mimax.data.download import fetch, once_per_machine
from mimax.data.images import ImageSplit, build_image_bundle
from mimax.errors import DataError

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEFAULT_DIRS = {"FashionMNIST": Path("/usr/share/datasets/fashion-mnist")}
LAYOUT = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
          "(each optionally .gz)")


def data_root(cfg) -> Path:
    if cfg.data_dir is not None:
        return Path(cfg.data_dir)
    default = DEFAULT_DIRS.get(cfg.dataset)
    if default is not None and default.is_dir():
        return default
    hint = " (Debian: apt-get install dataset-fashion-mnist)" if cfg.dataset == "FashionMNIST" else ""
    raise DataError(f"{cfg.dataset} needs --data_dir, the folder holding {LAYOUT}{hint}")


def find_file(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: missing {stem}[.gz]; expected {LAYOUT}")


def find_files(root: Path) -> dict[str, tuple[Path, Path]]:
    if not root.is_dir():
        raise DataError(f"{root}: directory not found; expected a folder holding {LAYOUT}")
    return {split: (find_file(root, images), find_file(root, labels)) for split, (images, labels) in FILES.items()}


def locate(cfg) -> Path:
    """The data folder, checked before training (with --download the files are fetched by the builder)."""
    root = data_root(cfg)
    if not cfg.download:
        find_files(root)
    return root


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file with ``ndim`` dimensions (DataError on anything else)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(f"{path}: not a uint8 IDX file with {ndim} dimension(s) (bad magic number)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if min(shape) < 1:
        raise DataError(f"{path}: IDX header says {shape}: every size must be >= 1")
    if len(raw) - header != math.prod(shape):
        raise DataError(f"{path}: IDX header says {shape} ({math.prod(shape)} bytes), file holds "
                        f"{len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_split(images_path: Path, labels_path: Path) -> ImageSplit:
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {labels_path.name} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: labels outside 0..9")
    return ImageSplit(1, images=torch.from_numpy(images.copy()).unsqueeze(1),
                      labels=torch.from_numpy(labels.astype(np.int64)))


def _download(root: Path, dataset: str) -> None:
    """The dataset's files from torchvision's mirrors, with the MD5 sums of its MNIST/FashionMNIST classes."""
    from torchvision.datasets import MNIST, FashionMNIST

    ref = {"MNIST": MNIST, "FashionMNIST": FashionMNIST}[dataset]
    fetch([([f"{mirror}{filename}" for mirror in ref.mirrors], filename, md5) for filename, md5 in ref.resources], root)


def build_idx(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1):
    root = locate(cfg)
    if cfg.download:
        once_per_machine(lambda: _download(root, cfg.dataset))
    paths = find_files(root)
    train, test = load_split(*paths["train"]), load_split(*paths["test"])
    return build_image_bundle(cfg.dataset, train, test, 10, cfg, device, seed, rank=rank, world=world)
