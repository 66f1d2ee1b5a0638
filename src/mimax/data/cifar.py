"""CIFAR-10 / CIFAR-100 from the official python archives, read in memory (nothing is extracted).

``--data_dir`` may be the archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``), a folder
holding it, the extracted ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or a folder holding
that. Each batch file is a pickle of ``{data: uint8 (N, 3072), labels | fine_labels: [int]}``; it is
read with :class:`RestrictedUnpickler`, which accepts only the numpy types those files contain, so a
tampered file cannot run code. Archive members are read with ``extractfile`` and never written to disk;
an archive with absolute, ``..`` or link members is refused outright.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from mimax.data.download import fetch, once_per_machine
from mimax.data.images import ImageSplit, build_image_bundle
from mimax.errors import DataError


@dataclass(frozen=True)
class CifarFormat:
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: str
    num_classes: int


FORMATS = {
    "CIFAR10": CifarFormat("cifar-10-python.tar.gz", "cifar-10-batches-py",
                           tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "labels", 10),
    "CIFAR100": CifarFormat("cifar-100-python.tar.gz", "cifar-100-python", ("train",), "test", "fine_labels", 100),
}


def _numpy_core(name: str):
    """``numpy._core.<module>.<name>`` (numpy 2), or ``numpy.core.<module>.<name>`` (numpy 1), for ``name`` =
    ``"<module>.<function>"``."""
    import importlib

    module, function = name.split(".")
    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), function)
    except (ImportError, AttributeError):  # numpy < 2
        return getattr(importlib.import_module(f"numpy.core.{module}"), function)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batch files: the globals they reference are numpy's array reconstruction
    (``numpy.core.multiarray._reconstruct`` written by numpy 1, ``numpy._core`` by numpy 2), ``numpy.ndarray``
    and ``numpy.dtype``; a batch re-pickled by Python 3 may also use ``_codecs.encode`` (bytes at protocol 2),
    numpy's ``_frombuffer`` (arrays at protocol 5) and ``multiarray.scalar`` (numpy integers as labels), each a
    constructor of data. Anything else is refused before it is imported."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "_codecs":
            return codecs.encode
        if module.startswith("numpy."):
            return _numpy_core(f"{module.rsplit('.', 1)[1]}.{name}")
        return getattr(np, name)


def load_batch(raw: bytes, where: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` from one batch file's bytes."""
    try:
        entry = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{where}: not a CIFAR python batch file ({exc})") from None
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        raise DataError(f"{where}: not a CIFAR python batch file (expected a dict with 'data' and '{label_key}')")
    data, labels = np.asarray(entry["data"]), np.asarray(entry[label_key])
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"{where}: '{label_key}' must be a list of integer labels, got {labels.dtype} "
                        f"{labels.shape}")  # a float 3.9 was read as 3, a string was a traceback
    labels = labels.astype(np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise DataError(f"{where}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _safe_member(member: tarfile.TarInfo, archive: Path) -> None:
    parts = PurePosixPath(member.name).parts
    if member.name.startswith("/") or ".." in parts:
        raise DataError(f"{archive}: refusing an archive with a member outside its folder ({member.name!r})")
    if member.issym() or member.islnk():
        raise DataError(f"{archive}: refusing an archive with a link member ({member.name!r})")


def _member_path(member: tarfile.TarInfo) -> str:
    """The member's path without ``.`` components (``./a/b`` and ``a/./b`` are ``a/b``)."""
    return "/".join(part for part in PurePosixPath(member.name).parts if part != ".")


def read_archive(archive: Path, fmt: CifarFormat) -> dict[str, bytes]:
    """Batch files of the archive by name, read in memory; every member is checked first."""
    layout = f"the official {fmt.archive} holding {fmt.folder}/{{{','.join(fmt.train_files)},{fmt.test_file}}}"
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _safe_member(m, archive)
            wanted = {f"{fmt.folder}/{n}": n for n in (*fmt.train_files, fmt.test_file)}
            # "./cifar-10-batches-py/x" (an archive repacked by `tar czf A ./cifar-10-batches-py`) is the same member
            found = {wanted[_member_path(m)]: m for m in members if _member_path(m) in wanted and m.isfile()}
            missing = sorted(set(wanted.values()) - set(found))
            if missing:
                raise DataError(f"{archive}: wrong archive, missing {', '.join(missing)}; expected {layout}")
            return {name: tar.extractfile(m).read() for name, m in found.items()}
    except (tarfile.TarError, EOFError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{archive}: not a readable tar archive ({reason}); expected {layout}") from None


def locate(cfg) -> Path:
    """The archive or the extracted batch folder under ``--data_dir`` (DataError if neither)."""
    fmt = FORMATS[cfg.dataset]
    if cfg.data_dir is None:
        raise DataError(f"{cfg.dataset} needs --data_dir (the folder holding {fmt.archive} or {fmt.folder}/; "
                        "add --download to fetch it there)")
    root = Path(cfg.data_dir)
    for candidate in (root, root / fmt.archive, root / fmt.folder):
        if candidate.is_file():
            if not tarfile.is_tarfile(candidate):  # a cheap look at the first block; members are checked on load
                raise DataError(f"{candidate}: not a readable tar archive; expected the official {fmt.archive}")
            return candidate
        if candidate.is_dir() and (candidate / fmt.test_file).is_file():
            return candidate
    if cfg.download:
        return root / fmt.archive  # fetched by build_cifar
    raise DataError(f"{root}: no {cfg.dataset} data found; expected {fmt.archive}, or the extracted {fmt.folder}/ "
                    f"folder with {', '.join(fmt.train_files)} and {fmt.test_file} (or pass --download)")


def _download(root: Path, dataset: str) -> None:
    """The archive from torchvision's URL, with its MD5 check; it is then read in memory like a local one."""
    from torchvision.datasets import CIFAR10, CIFAR100

    ref = {"CIFAR10": CIFAR10, "CIFAR100": CIFAR100}[dataset]
    fetch([([ref.url], ref.filename, ref.tgz_md5)], root)


def load(path: Path, dataset: str) -> tuple[ImageSplit, ImageSplit]:
    fmt = FORMATS[dataset]
    if path.is_file():
        raw = read_archive(path, fmt)
    else:
        raw = {n: (path / n).read_bytes() for n in (*fmt.train_files, fmt.test_file) if (path / n).is_file()}
        missing = [n for n in (*fmt.train_files, fmt.test_file) if n not in raw]
        if missing:
            raise DataError(f"{path}: missing {', '.join(missing)}; expected the extracted {fmt.folder}/ folder")
    parts = [load_batch(raw[n], f"{path}:{n}", fmt.label_key) for n in fmt.train_files]
    test_x, test_y = load_batch(raw[fmt.test_file], f"{path}:{fmt.test_file}", fmt.label_key)
    train_x, train_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    for where, y in (("train", train_y), ("test", test_y)):
        if y.size == 0:
            raise DataError(f"{path}: the {where} batches hold no images")
        if y.min() < 0 or y.max() >= fmt.num_classes:
            raise DataError(f"{path}: {where} labels outside 0..{fmt.num_classes - 1}; is this {dataset}?")
    return (ImageSplit(3, images=torch.from_numpy(train_x), labels=torch.from_numpy(train_y)),
            ImageSplit(3, images=torch.from_numpy(test_x), labels=torch.from_numpy(test_y)))


def build_cifar(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1):
    path = locate(cfg)
    if cfg.download and path.name == FORMATS[cfg.dataset].archive and not path.is_dir():
        # the official archive: fetched, or checked against torchvision's MD5 if there (every rank looks only
        # after the download: a partial archive is never seen)
        once_per_machine(lambda: _download(path.parent, cfg.dataset))
    train, test = load(path, cfg.dataset)
    return build_image_bundle(cfg.dataset, train, test, FORMATS[cfg.dataset].num_classes, cfg, device, seed,
                              rank=rank, world=world)
