"""ImageNet-100: 100 ImageNet-1k classes (CMC's list, Tian et al. 2019, shipped as
``imagenet100_classes.txt``; ``--class_list FILE`` overrides).

``--data_dir`` holds ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the validation images sorted into
class folders, as most ImageNet preparation scripts leave them): a prepared ImageNet-100 or a full
ImageNet-1k root alike. The listed classes are selected (each must exist in train/ and val/), other
class folders are ignored. The val split is the test split. Labels follow the order of the class list.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from mimax.data.base import read_text_file
from mimax.data.folders import class_names, file_split, scan_classes
from mimax.data.images import IMAGENET_EVAL_CROP, build_image_bundle, check_image_files, require_dir
from mimax.errors import DataError

LAYOUT = "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (a prepared ImageNet-100, or an ImageNet-1k root)"


def read_class_list(path: str | None) -> list[str]:
    """WordNet ids, one per line ('#' comments and blank lines ignored)."""
    if path is None:
        text = resources.files("mimax.data").joinpath("imagenet100_classes.txt").read_text()
        where = "the packaged imagenet100_classes.txt"
    else:
        p = Path(path)
        if not p.exists() or p.is_dir():
            what = "is a directory, not a file" if p.is_dir() else "file not found"
            raise DataError(f"{p}: --class_list {what}; expected one WordNet id per line")
        if not p.is_file():  # a pipe (`--class_list <(grep ...)`): config.json would record /dev/fd/63
            raise DataError(f"{p}: --class_list is not a regular file (a pipe?): the run records this path and "
                            "reads it again to resume or evaluate; give a file")
        text, where = read_text_file(p), str(p)
    wnids = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DataError(f"{where}: expected distinct class ids, one per line")
    return wnids


def locate(cfg) -> tuple[Path, list[str]]:
    if cfg.data_dir is None:
        raise DataError(f"ImageNet100 needs --data_dir: {LAYOUT}")
    root = require_dir(Path(cfg.data_dir), LAYOUT)
    wnids = read_class_list(cfg.class_list)
    for split in ("train", "val"):
        present = set(class_names(root / split, LAYOUT))
        missing = [w for w in wnids if w not in present]
        if missing:
            raise DataError(f"{root / split}: {len(missing)} of the {len(wnids)} listed classes are missing "
                            f"(e.g. {', '.join(missing[:3])}); expected {LAYOUT}")
    return root, wnids


def build_imagenet100(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1):
    root, wnids = locate(cfg)
    seen: dict[str, Path] = {}  # no folder twice, over both splits
    train_files, train_labels = scan_classes(root / "train", wnids, LAYOUT, seen=seen)
    val_files, val_labels = scan_classes(root / "val", wnids, LAYOUT, seen=seen)
    train = file_split(train_files, train_labels, IMAGENET_EVAL_CROP)
    test = file_split(val_files, val_labels, IMAGENET_EVAL_CROP)
    check_image_files(train.files + test.files)
    return build_image_bundle("ImageNet100", train, test, len(wnids), cfg, device, seed, rank=rank, world=world)
