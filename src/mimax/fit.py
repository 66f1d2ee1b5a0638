"""Defaults that fit the run: presets are written for full-size datasets and long schedules; these rules
adapt the values the user did *not* give to the run at hand, and say so in one line each.

- ``--warmup_epochs``: at most a tenth of ``--epochs`` (a preset's 10 warmup epochs would refuse a
  2-epoch run, or spend a 20-epoch run's first half warming up);
- ``--image_size`` of ``ImageFolder`` / ``Folder``: from the data, the median shorter side of (a fixed
  sample of) the images, at most 224 (the ImageNet crop), so 25 px faces are not trained at 224 px;
- ``--no_labels``: implied by ``--dataset Folder`` (a folder of unlabelled images);
- kNN's k: at most a fifth of the probe's training images (:func:`knn_k_for`);
- the MI monitor set and the probe's held-out split are sized by the data builders
  (:mod:`mimax.data.images`, :mod:`mimax.data.folders`), which print their own note.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mimax.errors import DataError

WARMUP_FRACTION = 0.1
MAX_INFERRED_SIZE = 224
MIN_INFERRED_SIZE = 8  # the smallest input the ResNets accept here
SIZE_SAMPLE = 256  # image headers read to infer the size (evenly spaced over the sorted files)
KNN_FRACTION = 0.2


def warmup_for(preset_warmup: int, epochs: int) -> int:
    """``min(preset, floor(WARMUP_FRACTION * epochs))``."""
    return min(preset_warmup, int(WARMUP_FRACTION * epochs))


def knn_k_for(k: int, n_train: int) -> int:
    """kNN's k, at most ``KNN_FRACTION`` of the training images (and at least 1)."""
    return max(1, min(k, int(KNN_FRACTION * n_train)))


def median_short_side(sizes: list[tuple[int, int]]) -> int:
    """The median of ``min(width, height)`` (the lower median: an actual image's side)."""
    return statistics.median_low(min(w, h) for w, h in sizes)


def infer_image_size(files: list[Path]) -> tuple[int, int]:
    """``(image size, images sampled)``: the median shorter side of up to ``SIZE_SAMPLE`` evenly spaced files,
    clipped to [``MIN_INFERRED_SIZE``, ``MAX_INFERRED_SIZE``]."""
    from mimax.data.images import image_size_of  # torchvision: imported for the image-folder datasets only

    step = max(1, len(files) // SIZE_SAMPLE)
    sample = files[::step][:SIZE_SAMPLE]
    sizes = [image_size_of(path) for path in sample]  # a file that is no image: one line naming it
    return min(MAX_INFERRED_SIZE, max(MIN_INFERRED_SIZE, median_short_side(sizes))), len(sample)


def fit_to_run(values: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Adapt, in place, the values the user did not give (``given``) to the run; one note per change."""
    notes = []
    if values.get("dataset") == "Folder" and not values.get("no_labels"):
        values["no_labels"] = True
    epochs, warmup = values.get("epochs"), values.get("warmup_epochs")
    # a preset's warmup fits the preset's epochs; it is fitted when the user chose the epochs but not the warmup
    if "warmup_epochs" not in given and "epochs" in given and isinstance(epochs, int) \
            and isinstance(warmup, (int, float)) and epochs >= 1:
        fitted = warmup_for(warmup, epochs)
        if fitted != warmup:
            values["warmup_epochs"] = fitted
            notes.append(f"--warmup_epochs {fitted}: the preset's {warmup} reduced to at most "
                         f"{WARMUP_FRACTION:.0%} of --epochs {epochs}")
    if values.get("dataset") in ("ImageFolder", "Folder") and values.get("image_size") is None \
            and values.get("data_dir"):
        files = _folder_files(values)
        if files:  # (never empty: an empty dataset raised above)
            size, sampled = infer_image_size(files)
            values["image_size"] = size
            notes.append(f"--image_size {size}: the median shorter side of {sampled} of the {len(files)} images "
                         f"in {values['data_dir']} (at most {MAX_INFERRED_SIZE}; give --image_size to choose)")
    return notes


def _folder_files(values: dict[str, Any]) -> list[Path]:
    """The training images of an ImageFolder/Folder dataset. A folder the dataset cannot read raises its
    :class:`DataError` here, naming the folder and the layout expected: the image size cannot be inferred
    from it, and "--image_size must be >= 8 (got None)" would send the user to the wrong flag."""
    from mimax.data import folders  # torchvision: imported for the image-folder datasets only

    cfg = SimpleNamespace(**{"class_list": None, **values})
    if values["dataset"] == "Folder":
        root = folders.locate_folder(cfg)
        files = folders.image_files(root, recursive=True)
        if not files:
            raise DataError(f"{root}: no image files found; expected {folders.FLAT}")
        return files
    train_root, _ = folders.locate_image_folder(cfg)
    classes = folders.class_names(train_root, folders.CLASS_TREE)
    return folders.scan_classes(train_root, classes, folders.CLASS_TREE)[0]
