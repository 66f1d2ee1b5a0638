"""Tiny ImageNet (Stanford CS231n): 200 classes of 64x64 images in the ``tiny-imagenet-200`` layout.

``--data_dir`` is the ``tiny-imagenet-200`` folder or its parent::

    wnids.txt                                  # the 200 class ids, one per line
    train/<wnid>/images/*.JPEG                 # 500 per class
    val/images/*.JPEG                          # 10,000 images
    val/val_annotations.txt                    # "<file>\t<wnid>\t<x0>\t<y0>\t<x1>\t<y1>" per image

The labelled val split is the test split (the official test split has no labels).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mimax.data.base import read_text_file
from mimax.data.folders import file_split, image_files, scan_classes
from mimax.data.images import build_image_bundle, check_image_files, require_dir
from mimax.errors import DataError

LAYOUT = ("tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
          "val/val_annotations.txt")


def locate(cfg) -> Path:
    if cfg.data_dir is None:
        raise DataError(f"TinyImageNet needs --data_dir: {LAYOUT}")
    root = require_dir(Path(cfg.data_dir), LAYOUT)
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    for needed in ("wnids.txt", "train", "val/images", "val/val_annotations.txt"):
        if not (root / needed).exists():
            raise DataError(f"{root}: missing {needed}; expected {LAYOUT}")
    return root


def read_wnids(path: Path) -> list[str]:
    wnids = [ln.strip() for ln in read_text_file(path).splitlines() if ln.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DataError(f"{path}: expected distinct class ids, one per line")
    return wnids


def read_val(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Validation files and labels from ``val_annotations.txt``; every annotated file must exist and
    every image in ``val/images`` must be annotated."""
    ann = root / "val" / "val_annotations.txt"
    index = {w: i for i, w in enumerate(wnids)}
    files, labels, first_line = [], [], {}
    for n, line in enumerate(read_text_file(ann).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{ann}:{n}: expected '<file>\\t<wnid>\\t...' with a wnid from wnids.txt, "
                            f"got {line[:80]!r}")
        if fields[0] in ("", ".", "..") or Path(fields[0]).name != fields[0]:  # `../../train/...`: a training image
            raise DataError(f"{ann}:{n}: {fields[0]!r} is not a file name in val/images")  # would be tested on
        path = root / "val" / "images" / fields[0]
        if not path.is_file():
            raise DataError(f"{ann}:{n}: annotated image {path} does not exist")
        if fields[0] in first_line:  # counted twice, it would also hide an image that is not annotated at all
            raise DataError(f"{ann}:{n}: {fields[0]} is annotated again (first on line {first_line[fields[0]]}); "
                            "each image once")
        first_line[fields[0]] = n
        files.append(path)
        labels.append(index[fields[1]])
    if not files:
        raise DataError(f"{ann}: annotates no image; the validation split is the test split of the linear probe "
                        "and kNN")
    on_disk = image_files(root / "val" / "images")
    missing = sorted({p.name for p in on_disk} - set(first_line))
    if missing:
        raise DataError(f"{root / 'val' / 'images'}: {len(missing)} image(s) not annotated in {ann.name} (e.g. "
                        f"{', '.join(missing[:3])})")
    return files, labels


def build_tiny_imagenet(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1):
    root = locate(cfg)
    wnids = read_wnids(root / "wnids.txt")
    train_files, train_labels = scan_classes(root / "train", wnids, LAYOUT, subdir="images")
    val_files, val_labels = read_val(root, wnids)
    train, test = file_split(train_files, train_labels, 1.0), file_split(val_files, val_labels, 1.0)
    check_image_files(train.files + test.files)
    return build_image_bundle("TinyImageNet", train, test, len(wnids), cfg, device, seed, rank=rank, world=world)
