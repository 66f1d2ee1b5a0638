"""What every image dataset shares: a split (uint8 arrays in memory, or image files), its view loader
(:class:`mimax.data.loading.ImageViewLoader`: per-image torchvision views in DataLoader workers, or
batched on the training device; the batched path crops image files from their full shorter-side
square, :meth:`ImageSplit.square`), the clean
evaluation sets, the fixed MI-monitor pairs, and :func:`build_image_bundle` that assembles a DataBundle.

Corrupt image files are an error, not skipped: a skipped file silently changes the training and test
sets (and the accuracy denominator), so results would stop being comparable between machines. Every
file's header is opened before training (:func:`check_image_files`), and a file that fails to decode
later raises a :class:`DataError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import functional as TF

from mimax import seeding
from mimax.data.base import DataBundle
from mimax.data.loading import ImageViewLoader, SeededItems
from mimax.data.views import BatchedViews, TorchvisionViews, ViewRecipe, recipe_for
from mimax.errors import DataError

IMAGENET_EVAL_CROP = 0.875  # resize the shorter side to size / 0.875, center-crop size (224 from 256)


# torchvision's IMG_EXTENSIONS and the other still-image formats PIL decodes here (the first frame of a GIF)
IMAGE_SUFFIXES = frozenset(IMG_EXTENSIONS) | {".gif", ".jfif", ".jpe", ".avif", ".apng", ".pbm", ".pnm", ".qoi",
                                              ".tga"}
# image formats PIL cannot decode without a plugin: an error when met in a data folder, never a silent skip
UNREADABLE_IMAGE_SUFFIXES = frozenset({".heic", ".heif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf",
                                       ".rw2", ".raf", ".raw", ".svg"})


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is named like an image mimax reads (:data:`IMAGE_SUFFIXES`, any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def require_dir(path: Path, layout: str) -> Path:
    """``path`` if it is a folder; else a DataError that says whether it is missing or a file."""
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "directory not found"
        raise DataError(f"{path}: {what}; expected {layout}")
    return path


def unreadable_image(path: Path, exc: BaseException, problem: str) -> DataError:
    """The one-line error for an image file that cannot be opened or decoded: permission denied asks to fix
    the permissions (the file may be fine), anything else says ``problem`` (which asks to delete or replace
    the file: it is corrupt, or no image)."""
    if isinstance(exc, PermissionError):
        return DataError(f"{path}: cannot read this image (permission denied); fix its permissions (chmod a+r) "
                         "or the permissions of its folder")
    return DataError(f"{path}: {problem}")


def decode_image(path: Path, channels: int) -> Tensor:
    """uint8 (C, H, W) from an image file (RGB for 3 channels, luma for 1), decoded by PIL and turned upright
    by its EXIF orientation (:func:`upright_8bit`); DataError naming the file if it fails."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            _check_pixels(path, img.size)
            return TF.pil_to_tensor(upright_8bit(img, path).convert("RGB" if channels == 3 else "L"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise unreadable_image(path, exc, f"cannot decode image ({str(exc).splitlines()[0][:120]}); "
                               "delete or replace the file") from None


def upright_8bit(img, path: Path):
    """A PIL image as it is displayed, in a mode with 8 bits per channel:

    - the EXIF orientation tag (phone cameras store photos sideways and say so there) is applied, as image
      viewers do; torchvision's PIL loader ignores it and so trains on the sensor's orientation;
    - 16-bit grey (PIL modes ``I;16*``, and ``I`` as 16-bit PNGs and TIFFs decode) is scaled over its full
      range, ``v * 255 / 65535`` rounded (torchvision's ``ToDtype(uint8, scale=True)``); PIL's own ``convert``
      clips every value above 255 to white;
    - 32-bit float images (mode ``F``), and mode ``I`` holding values outside 0..65535 (32-bit integers: they
      were scaled as 16-bit and clipped to almost all white), have no defined value range: a DataError asks
      for an 8- or 16-bit file.
    """
    import numpy as np
    from PIL import Image, ImageOps

    if img.getexif().get(0x0112, 1) != 1:  # Orientation other than "upright"
        img = ImageOps.exif_transpose(img)
    if img.mode == "F":
        raise DataError(f"{path}: a 32-bit floating-point image (PIL mode F), whose value range is not defined; "
                        "convert it to an 8- or 16-bit image")
    if img.mode == "I" or img.mode.startswith("I;16"):
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):  # mode I holding 32-bit values
            raise DataError(f"{path}: a 32-bit integer image (PIL mode I) with values outside 0..65535, whose "
                            "value range is not defined; convert it to an 8- or 16-bit image")
        grey = values.astype(np.float64) * (255.0 / 65535.0)
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), mode="L")
    return img


def image_size_of(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file's header (PIL identifies format and size without decoding the
    pixels); a DataError naming the file if it is not an image PIL can read or declares too many pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            size = img.size
    except Image.DecompressionBombError:
        raise DataError(f"{path}: declares more pixels than the {Image.MAX_IMAGE_PIXELS} an image may have "
                        "(a decompression bomb?); delete or shrink it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise unreadable_image(path, exc, f"corrupt or unreadable image file ({type(exc).__name__}); "
                               "delete or replace it") from None
    _check_pixels(path, size)
    return size


def check_image_files(files: Sequence[Path]) -> None:
    """Read every file's header (:func:`image_size_of`) before training."""
    for path in files:
        image_size_of(path)


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image whose header declares more pixels than PIL's decompression-bomb limit (decoding
    it would take gigabytes); PIL itself only warns below twice that limit."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS or 0
    if limit and size[0] * size[1] > limit:
        raise DataError(f"{path}: declares {size[0]}x{size[1]} pixels, more than the {limit} an image may "
                        "have (a decompression bomb?); delete or shrink it")


@dataclass
class ImageSplit:
    """Images in memory (``images``: uint8 (N, C, H, W)) or on disk (``files``), with optional labels.

    ``eval_crop`` is the fraction of the (resized) image the evaluation center crop keeps: 1.0 for
    fixed-size datasets, 0.875 for ImageNet-style photos of varying size."""

    channels: int
    images: Tensor | None = None
    files: list[Path] | None = None
    labels: Tensor | None = None
    eval_crop: float = 1.0

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.files)

    def subset(self, indices: Tensor) -> ImageSplit:
        idx = indices.tolist()
        return ImageSplit(self.channels,
                          images=self.images[indices] if self.images is not None else None,
                          files=[self.files[i] for i in idx] if self.files is not None else None,
                          labels=self.labels[indices] if self.labels is not None else None,
                          eval_crop=self.eval_crop)

    def raw(self, index: int) -> Tensor:
        """The stored image (uint8 (C, H, W))."""
        if self.images is not None:
            return self.images[index]
        return decode_image(self.files[index], self.channels)

    def resized(self, index: int, size: int) -> Tensor:
        """The evaluation-geometry image: shorter side to ``size / eval_crop``, center crop ``size``."""
        return resize_center(self.raw(index), size, self.eval_crop)

    def square(self, index: int, size: int) -> Tensor:
        """The full shorter-side square: shorter side to ``size``, center crop ``size`` x ``size`` (what
        the batched path's training and monitor views are cut from; no evaluation crop)."""
        return resize_center(self.raw(index), size, 1.0)


def resize_center(image: Tensor, size: int, crop: float) -> Tensor:
    """Resize the shorter side to ``round(size / crop)`` (antialiased), then center-crop ``size``."""
    short = round(size / crop)
    if min(image.shape[-2:]) != short:
        image = TF.resize(image, [short], antialias=True)
    if image.shape[-2:] != (size, size):
        image = TF.center_crop(image, [size, size])
    return image


def fixed_subset(n: int, keep: int | None) -> Tensor:
    """The first ``keep`` of a fixed permutation of ``range(n)``, sorted (all of them if keep is None)."""
    if keep is None or keep >= n:
        return torch.arange(n)
    perm = torch.randperm(n, generator=seeding.generator(seeding.SUBSET_SEED))
    return perm[:keep].sort().values


def subset_notes(name: str, n_train: int, n_test: int | None, cfg) -> list[str]:
    """A note for each of ``--train_subset``/``--test_subset`` that asks for more images than the split
    holds (the whole split is used), and for a ``--test_subset`` without a test split to evaluate on (``n_test``
    None: a Folder, or ``--no_labels``), where it is unused."""
    notes = []
    for flag, keep, have, split in (("train_subset", cfg.train_subset, n_train, "training"),
                                    ("test_subset", cfg.test_subset, n_test, "test")):
        if keep is None:
            continue
        if have is None:
            notes.append(f"--{flag} {keep} unused: no {split} split is evaluated here (--dataset Folder or "
                         "--no_labels)")
        elif keep > have:
            notes.append(f"--{flag} {keep}: {name} has {have} {split} images; all of them are used")
    return notes


class ViewPairs:
    """``pairs(i)``: the two per-image torchvision views of image ``i`` (from torch's global RNG)."""

    def __init__(self, split: ImageSplit, recipe: ViewRecipe):
        self.split, self.views = split, TorchvisionViews(recipe)

    def __call__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.views(self.split.raw(index))


class Squares:
    """``squares(i)``: image ``i``'s full shorter-side square resized to ``size`` (batched-path input)."""

    def __init__(self, split: ImageSplit, size: int):
        self.split, self.size = split, size

    def __call__(self, index: int) -> Tensor:
        return self.split.square(index, self.size)


class EvalImages(Dataset):
    """``(x, y)`` without augmentation: evaluation geometry, float, normalized (probe / kNN input)."""

    def __init__(self, split: ImageSplit, recipe: ViewRecipe):
        self.split, self.size = split, recipe.size
        self.mean = torch.tensor(recipe.mean).view(-1, 1, 1)
        self.std = torch.tensor(recipe.std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = self.split.resized(index, self.size).float().div_(255)
        return (x - self.mean) / self.std, self.split.labels[index]


def square_side(split: ImageSplit, recipe: ViewRecipe) -> int:
    """The side of the square the batched path crops from: ``image_size / eval_crop`` for photos (256
    for 224), the stored size's counterpart ``image_size`` for fixed-size images."""
    return round(recipe.size / split.eval_crop)


def monitor_pairs(split: ImageSplit, recipe: ViewRecipe, count: int,
                  batched: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """``count`` fixed images of ``split`` and one pair of views of each, drawn once with a fixed seed
    (:data:`mimax.seeding.MONITOR_VIEW_SEED`) by the same implementation as training, on the CPU (so
    they are the same on every device)."""
    chosen = split.subset(fixed_subset(len(split), count))
    if batched:
        images = (chosen.images if chosen.images is not None
                  else torch.stack([chosen.square(i, square_side(chosen, recipe)) for i in range(len(chosen))]))
        x_a, x_b = BatchedViews(recipe)(images, seeding.generator(seeding.MONITOR_VIEW_SEED))
    else:
        pairs = SeededItems(ViewPairs(chosen, recipe), len(chosen))
        views = [pairs[(i, seeding.sample_seed(seeding.MONITOR_VIEW_SEED, 0, i))] for i in range(len(chosen))]
        x_a, x_b = torch.stack([v[0] for v in views]), torch.stack([v[1] for v in views])
    return x_a, x_b, chosen.labels


def train_view_loader(train: ImageSplit, recipe: ViewRecipe, cfg, device: torch.device, seed: int, rank: int = 0,
                      world: int = 1) -> ImageViewLoader:
    """This rank's view loader of ``train``: per-image views in workers, or (``--gpu_augment``) batched
    views on ``device`` of the in-memory images or of the files' squares decoded in workers."""
    common = dict(rank=rank, world=world, num_workers=cfg.num_workers)
    if not cfg.gpu_augment:
        return ImageViewLoader(len(train), cfg.batch_size, seed, device, pairs=ViewPairs(train, recipe), **common)
    batched = BatchedViews(recipe)
    if train.images is not None:
        return ImageViewLoader(len(train), cfg.batch_size, seed, device, batched=batched, images=train.images,
                               **common)
    side = square_side(train, recipe)
    return ImageViewLoader(len(train), cfg.batch_size, seed, device, batched=batched,
                           decode=Squares(train, side), decoded_shape=(train.channels, side, side), **common)


def _monitor(train: ImageSplit, test: ImageSplit | None, recipe: ViewRecipe, wanted: int, batched: bool,
             build: bool = True) -> tuple[tuple[Tensor, Tensor, Tensor | None] | None, str | None]:
    """The MI-monitor pairs (None unless ``build``): from the test split when it holds ``wanted`` images
    (or at least as many as the training split), else from the training split; fewer than ``wanted``
    pairs only when the data has fewer images, which the returned note says (else None)."""
    source, where = (test, "test") if test is not None and len(test) >= min(wanted, len(train)) else (train, "training")
    count = min(wanted, len(source))
    note = None
    if count < wanted:
        note = (f"MI monitor set of {count} pairs from the {where} images (--monitor_size {wanted} reduced: the "
                f"dataset has {len(source)} {where} images)")
    return (monitor_pairs(source, recipe, count, batched) if build else None), note


def build_image_bundle(name: str, train: ImageSplit, test: ImageSplit | None, num_classes: int | None,
                       cfg, device: torch.device, seed: int, notes: list[str] | None = None, rank: int = 0,
                       world: int = 1) -> DataBundle:
    """Assemble the DataBundle of rank ``rank`` of ``world``: subsets, recipe, this rank's view loader,
    evaluation sets and (rank 0, which runs the monitors) the monitor pairs. ``extras["notes"]``: the
    values fitted to a small dataset (the trainer prints them)."""
    notes = list(notes or []) + subset_notes(name, len(train), None if test is None or cfg.no_labels else len(test),
                                             cfg)
    train = train.subset(fixed_subset(len(train), cfg.train_subset))
    if test is not None:
        test = test.subset(fixed_subset(len(test), cfg.test_subset))
    if cfg.no_labels:
        num_classes, test = None, None
        train = ImageSplit(train.channels, train.images, train.files, None, train.eval_crop)
    if cfg.num_classes is not None and num_classes is not None and cfg.num_classes != num_classes:
        where = f" at {cfg.data_dir}" if cfg.data_dir else ""  # Digits ships with scikit-learn: no folder
        raise DataError(f"--num_classes: {name}{where} has {num_classes} classes (got {cfg.num_classes})")
    if len(train) < cfg.batch_size:
        raise DataError(f"--batch_size: {name} has {len(train)} training images, fewer than one batch "
                        f"of {cfg.batch_size}")
    recipe = recipe_for(cfg, name, train.channels)
    views = train_view_loader(train, recipe, cfg, device, seed, rank, world)
    monitor, note = _monitor(train, test, recipe, cfg.monitor_size or 2048, cfg.gpu_augment, build=rank == 0)
    notes += [note] if note else []
    on_disk = train.files is not None
    return DataBundle(
        name=name, input_shape=(train.channels, recipe.size, recipe.size), num_classes=num_classes,
        train_views=views,
        probe_train=EvalImages(train, recipe) if test is not None else None,
        probe_test=EvalImages(test, recipe) if test is not None else None,
        monitor_views=(monitor[0].to(device), monitor[1].to(device)) if monitor else None,
        monitor_labels=monitor[2] if monitor else None,
        extras={"eval_workers": cfg.num_workers if on_disk else 0, "recipe": recipe, "notes": notes},
    )
