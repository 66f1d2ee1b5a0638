"""Image folders: a labelled class-per-folder tree (``ImageFolder``) and an unlabelled folder
(``Folder --no_labels``). Helpers here also scan the TinyImageNet and ImageNet-100 trees.

``ImageFolder`` layouts: ``DATA_DIR/train/<class>/*.jpg`` with ``DATA_DIR/val/<class>/`` (or ``test/``)
holding the same classes; or a single ``DATA_DIR/<class>/*.jpg`` tree, of which a fixed 10% of each
class (at least one image; 20% below 1,000 images) is held out as the test split. ``Folder``: every image file under
``DATA_DIR`` (recursively), no labels: pretraining only. Image files are those named with
:data:`mimax.data.images.IMAGE_SUFFIXES`; every file's header is checked before training (corrupt files are an
error). Folders are searched through symlinks; hidden folders, :data:`SKIPPED_FOLDERS` and mimax run directories
(a folder holding the ``.mimax-run`` marker: ``--output_dir`` inside ``--data_dir``) are not searched.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import torch

from mimax import seeding
from mimax.data import CLASS_TREE, FLAT
from mimax.data.images import (
    IMAGENET_EVAL_CROP,
    UNREADABLE_IMAGE_SUFFIXES,
    ImageSplit,
    build_image_bundle,
    check_image_files,
    is_image_file,
    require_dir,
)
from mimax.errors import DataError
from mimax.naming import RUN_MARKER

HELD_OUT = 0.1
SMALL_DATASET = 1000  # below this many images, hold out SMALL_HELD_OUT: a 10% test split would be too coarse
SMALL_HELD_OUT = 0.2


# Folders that hold copies or metadata of the images beside them (thumbnails, archive resource forks), not
# images of their own: searched, they would put the same picture in the training and the test split.
SKIPPED_FOLDERS = frozenset({"@eaDir", "__MACOSX"})


def searched(name: str) -> bool:
    """Whether a sub-folder called ``name`` is searched for images: not hidden, not one of SKIPPED_FOLDERS."""
    return not name.startswith(".") and name not in SKIPPED_FOLDERS


def is_run_dir(folder: Path) -> bool:
    """Whether ``folder`` is a mimax run directory (it holds :data:`mimax.naming.RUN_MARKER`): a run written
    inside the data folder (``--output_dir`` under ``--data_dir``, or ``--data_dir .``), whose figures
    (``seed_0/monitors.png``) are not training images and must not join the data of the next seed or run."""
    return os.path.isfile(os.path.join(folder, RUN_MARKER))


def holds_only_runs(folder: Path) -> bool:
    """Whether ``folder`` holds mimax run directories and nothing else (hidden entries aside): the default
    ``runs/`` of a run started with ``--data_dir .``, made before the data is read. It is no class."""
    try:
        with os.scandir(folder) as entries:
            shown = [e for e in entries if not e.name.startswith(".")]
        return bool(shown) and all(e.is_dir() and is_run_dir(Path(e.path)) for e in shown)
    except OSError:
        return False  # an unlistable folder or a looping symlink is the image scan's error to report


def searched_folder(folder: Path) -> bool:
    """Whether the sub-folder ``folder`` is searched for images (or is a class): :func:`searched` by its
    name, and neither a mimax run directory (:func:`is_run_dir`) nor a folder of them (:func:`holds_only_runs`)."""
    return searched(folder.name) and not is_run_dir(folder) and not holds_only_runs(folder)


def image_files(folder: Path, recursive: bool = False, seen: dict[str, Path] | None = None) -> list[Path]:
    """The image files of ``folder`` (and, with ``recursive``, of its sub-folders, symlinked ones included,
    hidden ones, :data:`SKIPPED_FOLDERS` and mimax run directories not). An entry with an image name that is
    not a readable regular file (a dangling or looping symlink, a FIFO, a device), a file of an image format PIL
    cannot decode (:data:`UNREADABLE_IMAGE_SUFFIXES`), a folder that cannot be listed, and a folder reached twice
    through symlinks (its images would count twice) are errors, never skipped: docs/data.md promises that bad files
    stop the run. ``seen`` (real path -> the folder first listed there) spans several calls: the class folders
    of a dataset and its splits, where a folder reached twice would give its images two labels."""

    def unreadable(exc: OSError) -> None:
        raise DataError(f"{exc.filename or folder}: cannot read this folder ({exc.strerror}); fix its "
                        "permissions or remove it") from None

    seen = {} if seen is None else seen
    entries: list[Path] = []
    if recursive:
        for root, dirs, names in os.walk(folder, onerror=unreadable, followlinks=True):
            _first_visit(Path(root), seen)
            dirs[:] = sorted(d for d in dirs if searched_folder(Path(root) / d))
            entries += [Path(root) / n for n in names]  # (a dangling symlink is listed here, as a file)
    else:
        _first_visit(folder, seen)
        try:
            entries = [p for p in folder.iterdir() if not p.is_dir()]
        except OSError as exc:
            unreadable(exc)
    found = []
    for p in entries:
        if p.suffix.lower() in UNREADABLE_IMAGE_SUFFIXES:
            raise DataError(f"{p}: a {p.suffix.lstrip('.').upper()} image, which PIL cannot decode; convert it "
                            "to JPEG or PNG, or move it out of the data folder")
        if _dangling(p) and not is_image_file(p) and searched(p.name):  # maybe a folder of images
            raise DataError(f"{p}: broken symlink (its target does not exist); delete or fix it")
        if not is_image_file(p) or p.name.startswith("._"):  # `._x.jpg`: macOS's AppleDouble metadata of x.jpg
            continue  # (copied to exFAT/SMB, unzipped on Linux): never an image, as __MACOSX/ holds them
        try:
            mode = p.stat().st_mode  # follows a symlink to its target
        except OSError as exc:
            raise DataError(f"{p}: broken image entry ({exc.strerror}: a dangling or looping symlink?); "
                            "delete or fix it") from None
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise DataError(f"{p}: not a regular file (a FIFO, socket or device named like an image); delete it")
        found.append(p)
    return sorted(found)


def _first_visit(folder: Path, seen: dict[str, Path]) -> None:
    """Record ``folder`` in ``seen`` by its real path; a folder already there (through a symlink) is an error."""
    real = os.path.realpath(folder)
    if real in seen:
        raise DataError(f"{folder}: the same folder as {seen[real]} (through a symlink): its images would be "
                        "read twice, or forever if the link loops; remove the link")
    seen[real] = folder


def _dangling(path: Path) -> bool:
    """A symlink whose target does not exist (or loops)."""
    return path.is_symlink() and not path.exists()


def class_names(root: Path, layout: str) -> list[str]:
    """The class folders of ``root`` (sorted; hidden ones, :data:`SKIPPED_FOLDERS` and mimax run directories
    left out: a run written into the data folder is not a class). A class
    folder that is a broken symlink is an error: its class would silently vanish from the labels."""
    require_dir(root, layout)
    for p in root.iterdir():
        if searched(p.name) and _dangling(p):
            raise DataError(f"{p}: broken symlink (its target does not exist); delete or fix it")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and searched_folder(p))
    if not names:
        raise DataError(f"{root}: no class folders; expected {layout}")
    return names


def scan_classes(root: Path, classes: list[str], layout: str, subdir: str = "",
                 seen: dict[str, Path] | None = None) -> tuple[list[Path], list[int]]:
    """Image files of ``root/<class>/<subdir>`` for each class, with the class index as label. No folder may be
    reached twice over all classes (and over the splits that share ``seen``): one image, two labels."""
    seen = {} if seen is None else seen
    files, labels = [], []
    for index, name in enumerate(classes):
        folder = root / name / subdir if subdir else root / name
        require_dir(folder, layout)
        found = image_files(folder, recursive=not subdir, seen=seen)
        if not found:
            raise DataError(f"{folder}: empty class folder (no image files); expected {layout}")
        files += found
        labels += [index] * len(found)
    return files, labels


def file_split(files: list[Path], labels: list[int] | None, eval_crop: float) -> ImageSplit:
    return ImageSplit(3, files=files, labels=None if labels is None else torch.tensor(labels, dtype=torch.int64),
                      eval_crop=eval_crop)


def held_out_fraction(n_images: int) -> float:
    return HELD_OUT if n_images >= SMALL_DATASET else SMALL_HELD_OUT


def held_out_split(files: list[Path], labels: list[int]) -> tuple[ImageSplit, ImageSplit]:
    """A fixed ``HELD_OUT`` fraction of each class (at least one image, and at least one kept);
    ``SMALL_HELD_OUT`` for datasets of fewer than ``SMALL_DATASET`` images (said in a note)."""
    gen = seeding.generator(seeding.SUBSET_SEED)
    fraction = held_out_fraction(len(files))
    y = torch.tensor(labels)
    test_mask = torch.zeros(len(files), dtype=torch.bool)
    for c in y.unique():
        idx = (y == c).nonzero().squeeze(1)
        if len(idx) < 2:
            raise DataError(f"{files[idx[0]].parent}: a class needs at least 2 images to hold one out for testing")
        take = min(len(idx) - 1, max(1, int(fraction * len(idx))))
        test_mask[idx[torch.randperm(len(idx), generator=gen)[:take]]] = True
    split = [file_split([f for f, t in zip(files, test_mask) if t == want],
                        [lab for lab, t in zip(labels, test_mask) if t == want], IMAGENET_EVAL_CROP)
             for want in (False, True)]
    return split[0], split[1]


def _data_dir(cfg, layout: str) -> Path:
    if cfg.data_dir is None:
        raise DataError(f"{cfg.dataset} needs --data_dir: {layout}")
    return require_dir(Path(cfg.data_dir), layout)


def locate_image_folder(cfg) -> tuple[Path, Path | None]:
    root = _data_dir(cfg, CLASS_TREE)
    if (root / "train").is_dir():
        test = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
        if test is None:
            raise DataError(f"{root}: has train/ but no val/ or test/; expected {CLASS_TREE}")
        return root / "train", test
    return root, None


def build_image_folder(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1):
    train_root, test_root = locate_image_folder(cfg)
    classes = class_names(train_root, CLASS_TREE)
    seen: dict[str, Path] = {}  # over both splits: a test class linked to a training one is the same images
    files, labels = scan_classes(train_root, classes, CLASS_TREE, seen=seen)
    notes: list[str] = []
    loose = image_files(train_root)  # torchvision's ImageFolder leaves them out too, but silently
    if loose:
        notes.append(f"{len(loose)} image file(s) directly in {train_root} (e.g. {loose[0].name}) are in no class "
                     "folder and are not used")
    if len(classes) == 1 and not cfg.no_labels:
        notes.append(f"{train_root} has one class folder ({classes[0]}): the linear probe and kNN are 100% "
                     "accurate by construction (--no_labels skips them)")
    if test_root is None:
        train, test = held_out_split(files, labels)
        if held_out_fraction(len(files)) != HELD_OUT:
            notes.append(f"{len(files)} images, no test split: {held_out_fraction(len(files)):.0%} of each class "
                         f"is held out for the linear probe and kNN ({HELD_OUT:.0%} from {SMALL_DATASET} images on)")
    else:
        test_classes = class_names(test_root, CLASS_TREE)
        if test_classes != classes:
            diff = sorted(set(classes) ^ set(test_classes))[:5]
            raise DataError(f"{test_root}: its class folders differ from {train_root} (e.g. {', '.join(diff)}); "
                            f"expected {CLASS_TREE}")
        test_files, test_labels = scan_classes(test_root, classes, CLASS_TREE, seen=seen)
        train, test = file_split(files, labels, IMAGENET_EVAL_CROP), file_split(test_files, test_labels,
                                                                                  IMAGENET_EVAL_CROP)
    check_image_files(train.files + test.files)
    return build_image_bundle("ImageFolder", train, test, len(classes), cfg, device, seed, notes, rank, world)



def locate_folder(cfg) -> Path:
    return _data_dir(cfg, FLAT)


def build_folder(cfg, device: torch.device, seed: int, rank: int = 0, world: int = 1):
    root = locate_folder(cfg)
    files = image_files(root, recursive=True)
    if not files:
        raise DataError(f"{root}: no image files found; expected {FLAT}")
    check_image_files(files)
    return build_image_bundle("Folder", file_split(files, None, IMAGENET_EVAL_CROP), None, None, cfg, device, seed,
                              rank=rank, world=world)
