"""Writers of tiny datasets in their real on-disk formats (used by the image-data tests)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class Py2Pickler(pickle._Pickler):
    """Protocol-2 pickles as Python 2's cPickle wrote the official CIFAR files: byte strings as
    BINSTRING opcodes (not Python 3's ``_codecs.encode`` call) and numpy 1's module path."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch(rng: np.random.Generator, n: int, num_classes: int, label_key: str) -> dict:
    """One batch dict with the keys and types of the official python version."""
    entry = {"batch_label": "training batch 1 of 5", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             label_key: [int(v) for v in rng.integers(0, num_classes, n)],
             "filenames": [f"img_{i}.png" for i in range(n)]}
    if label_key == "fine_labels":
        entry["coarse_labels"] = [int(v) % 20 for v in entry[label_key]]
    return entry


def write_cifar(root: Path, dataset: str = "CIFAR10", per_batch: int = 12, extracted: bool = False,
                seed: int = 0, override: dict[str, bytes] | None = None) -> tuple[Path, dict[str, dict]]:
    """``cifar-10-python.tar.gz`` (or the extracted folder) with real pickles; returns (path, batches)."""
    rng = np.random.default_rng(seed)
    if dataset == "CIFAR10":
        folder, names, key, classes = "cifar-10-batches-py", CIFAR10_FILES, "labels", 10
        archive = "cifar-10-python.tar.gz"
    else:
        folder, names, key, classes = "cifar-100-python", ["train", "test"], "fine_labels", 100
        archive = "cifar-100-python.tar.gz"
    batches = {n: cifar_batch(rng, per_batch, classes, key) for n in names}
    blobs = {n: py2_pickle(b) for n, b in batches.items()}
    blobs.update(override or {})
    root.mkdir(parents=True, exist_ok=True)
    if extracted:
        (root / folder).mkdir(exist_ok=True)
        for n, blob in blobs.items():
            (root / folder / n).write_bytes(blob)
        (root / folder / "batches.meta").write_bytes(py2_pickle({"label_names": []}))
        return root / folder, batches
    write_tar(root / archive, {f"{folder}/{n}": blob for n, blob in blobs.items()})
    return root / archive, batches


def write_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_set(root: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8)}
    for name, arr in arrays.items():
        blob = idx_bytes(arr)
        if gz:
            (root / (name + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (root / name).write_bytes(blob)
    return arrays


def write_image(path: Path, rng: np.random.Generator, size: tuple[int, int] = (20, 16),
                mode: str = "RGB") -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return pixels


def write_tiny_imagenet(parent: Path, wnids: list[str], per_class: int = 4, val_per_class: int = 2,
                        seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root = parent / "tiny-imagenet-200"
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        for i in range(per_class):
            write_image(root / "train" / w / "images" / f"{w}_{i}.JPEG", rng, (64, 64),
                        mode="L" if i == 0 else "RGB")  # Tiny ImageNet has some grayscale JPEGs
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for k in range(val_per_class * len(wnids)):
        name = f"val_{k}.JPEG"
        write_image(root / "val" / "images" / name, rng, (64, 64))
        lines.append(f"{name}\t{wnids[k % len(wnids)]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def write_class_tree(root: Path, classes: list[str], per_class: int, seed: int = 0, ext: str = ".png",
                     size: tuple[int, int] = (20, 16)) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {c: [write_image(root / c / f"{c}_{i}{ext}", rng, size) for i in range(per_class)] for c in classes}
