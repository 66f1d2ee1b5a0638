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
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from mimax.data.download import fetch, once_per_machine
from mimax.data.images import ImageSplit, build_image_bundle
from mimax.errors import DataError
from mimax.runtime.device import memory_bytes

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEFAULT_DIRS = {"FashionMNIST": Path("/usr/share/datasets/fashion-mnist")}
CHUNK = 1 << 24  # bytes read at a time (a gzip stream is decompressed as it is read)
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
        what = "is a file, not a directory" if root.exists() else "directory not found"
        raise DataError(f"{root}: {what}; expected a folder holding {LAYOUT}")
    return {split: (find_file(root, images), find_file(root, labels)) for split, (images, labels) in FILES.items()}


def locate(cfg) -> Path:
    """The data folder, checked before training (with --download the files are fetched by the builder)."""
    root = data_root(cfg)
    if not cfg.download:
        find_files(root)
    return root


class _Problem(Exception):
    """What is wrong with an IDX file (the message after its path)."""


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file with ``ndim`` dimensions (a DataError naming the file on anything
    else). The header is read and checked first, then exactly the bytes it declares: a wrong, truncated or
    overlong file (or gzip stream) is refused without reading more than it must, nor more than memory holds."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
            shape = _read_header(stream, ndim)
            _check_size(path, stream, shape)
            return _read_values(stream, shape)
    except _Problem as exc:
        raise DataError(f"{path}: {exc}") from None
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({' '.join(str(exc).split()) or type(exc).__name__})") from None


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """``n`` bytes of ``stream``, or fewer at its end (a gzip stream may return short reads)."""
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_header(stream: BinaryIO, ndim: int) -> tuple[int, ...]:
    """The sizes an IDX header declares, after checking its magic number (uint8 values, ``ndim`` sizes)."""
    magic = _read_exactly(stream, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08 or magic[3] != ndim:
        raise _Problem(f"not a uint8 IDX file with {ndim} dimension(s) (bad magic number)")
    sizes = _read_exactly(stream, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise _Problem("truncated IDX header")
    shape = struct.unpack(f">{ndim}I", sizes)
    if min(shape) < 1:
        raise _Problem(f"IDX header says {shape}: every size must be >= 1")
    return shape


def _check_size(path: Path, stream: BinaryIO, shape: tuple[int, ...]) -> None:
    """Refuse, before reading the values, an uncompressed file whose size disagrees with its header, and a
    header declaring more bytes than this machine's memory."""
    need = math.prod(shape)
    if path.suffix != ".gz":
        held = os.fstat(stream.fileno()).st_size - 4 - 4 * len(shape)
        if held != need:
            raise _Problem(f"IDX header says {shape} ({need} bytes), file holds {held} bytes")
    if need > memory_bytes():
        raise _Problem(f"IDX header says {shape} ({need} bytes), more than this machine's memory "
                       f"({memory_bytes()} bytes); not an MNIST-like file")


def _read_values(stream: BinaryIO, shape: tuple[int, ...]) -> np.ndarray:
    """Exactly ``prod(shape)`` bytes of values, then the end of the stream (more or fewer is an error)."""
    need = math.prod(shape)
    values = np.empty(need, dtype=np.uint8)
    view, got = memoryview(values), 0
    while got < need:
        n = stream.readinto(view[got:got + CHUNK])
        if not n:
            raise _Problem(f"IDX header says {shape} ({need} bytes), the data holds only {got} bytes (truncated)")
        got += n
    if stream.read(1):
        raise _Problem(f"IDX header says {shape} ({need} bytes), the data holds more (trailing bytes)")
    return values.reshape(shape)


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
