"""What every image dataset shares: a split (uint8 arrays in memory, or image files), the view loaders
(per-image torchvision transforms in DataLoader workers, or batched on the training device), the clean
evaluation sets, the fixed MI-monitor pairs, and :func:`build_image_bundle` that assembles a DataBundle.

Corrupt image files are an error, not skipped: a skipped file silently changes the training and test
sets (and the accuracy denominator), so results would stop being comparable between machines. Every
file's header is opened before training (:func:`check_image_files`), and a file that fails to decode
later raises a :class:`DataError` naming it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import functional as TF

from mimax.data.base import DataBundle
from mimax.data.loading import SkipFirst
from mimax.data.views import BatchedViews, TorchvisionViews, ViewRecipe, recipe_for
from mimax.errors import DataError

SUBSET_SEED = 1_234_567  # fixed: --train_subset/--test_subset and the monitor images are the same for all seeds
MONITOR_VIEW_SEED = 2_147_483_000  # fixed: monitor views are drawn once, the same for all runs
IMAGENET_EVAL_CROP = 0.875  # resize the shorter side to size / 0.875, center-crop size (224 from 256)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS


def require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: directory not found; expected {layout}")
    return path


def decode_image(path: Path, channels: int) -> Tensor:
    """uint8 (C, H, W) from an image file (RGB for 3 channels, luma for 1), decoded by PIL;
    DataError naming the file if it fails."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            _check_pixels(path, img.size)
            return TF.pil_to_tensor(img.convert("RGB" if channels == 3 else "L"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({str(exc).splitlines()[0][:120]}); "
                        "delete or replace the file") from None


def check_image_files(files: Sequence[Path]) -> None:
    """Open every file's header (PIL identifies format and size without decoding the pixels)."""
    from PIL import Image, UnidentifiedImageError

    for path in files:
        try:
            with Image.open(path) as img:
                size = img.size  # reading the header is the check
        except Image.DecompressionBombError:
            raise DataError(f"{path}: declares more pixels than the {Image.MAX_IMAGE_PIXELS} an image may have "
                            "(a decompression bomb?); delete or shrink it") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: corrupt or unreadable image file ({type(exc).__name__}); "
                            "delete or replace it") from None
        _check_pixels(path, size)


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
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))
    return perm[:keep].sort().values


def item_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2**63 - 1)


class TwoViewDataset(Dataset):
    """``(view_a, view_b)`` of image ``i`` with torchvision transforms. The global torch RNG is re-seeded
    per item from (seed, epoch, i) inside ``fork_rng``, so the views do not depend on the number of
    workers or on which worker draws them, and the caller's RNG is untouched."""

    def __init__(self, split: ImageSplit, recipe: ViewRecipe, seed: int):
        self.split, self.views, self.seed, self.epoch = split, TorchvisionViews(recipe), seed, 0

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.split.raw(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, self.epoch, index))
            return self.views(image)


class FixedSizeImages(Dataset):
    """uint8 images at a fixed square size (for the batched path over image files)."""

    def __init__(self, split: ImageSplit, size: int):
        self.split, self.size = split, size

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Tensor:
        return self.split.resized(index, self.size)


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


def _reraise_worker_error(exc: DataError) -> DataError:
    """A DataError raised in a DataLoader worker arrives with the worker's traceback: keep one line."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else str(exc)
    return DataError(last.split("DataError: ", 1)[-1])


class WorkerViewLoader:
    """Per-image torchvision views in DataLoader workers; shuffled by a generator seeded by (seed, epoch)."""

    def __init__(self, split: ImageSplit, recipe: ViewRecipe, batch_size: int, num_workers: int, seed: int,
                 device: torch.device):
        self.dataset = TwoViewDataset(split, recipe, seed)
        self.batch_size, self.num_workers, self.seed, self.device = batch_size, num_workers, seed, device

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``start, ...`` of ``epoch``: the shuffled order is drawn as in a full epoch and its first
        ``start`` batches' indices are skipped before anything is loaded (views are seeded per sample)."""
        self.dataset.epoch = epoch
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        sampler = SkipFirst(RandomSampler(self.dataset, generator=gen), start * self.batch_size)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                            generator=gen, num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        try:
            for x_a, x_b in loader:
                yield x_a.to(self.device, non_blocking=True), x_b.to(self.device, non_blocking=True)
        except DataError as exc:
            raise _reraise_worker_error(exc) from None


class BatchedViewLoader:
    """Batched views on the training device (``--gpu_augment``). In-memory images are moved to the
    device once and indexed there; image files are decoded to a fixed size in DataLoader workers.
    One generator on the device, seeded by (seed, epoch), draws the order and every view parameter."""

    def __init__(self, split: ImageSplit, recipe: ViewRecipe, batch_size: int, num_workers: int, seed: int,
                 device: torch.device):
        self.views, self.batch_size, self.num_workers = BatchedViews(recipe), batch_size, num_workers
        self.seed, self.device, self.n = seed, device, len(split)
        self.images = split.images.to(device) if split.images is not None else None
        load = round(recipe.size / split.eval_crop)
        self.files = FixedSizeImages(split, load) if split.images is None else None

    def __len__(self) -> int:
        return self.n // self.batch_size

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``start, ...`` of ``epoch``. One device generator draws the order and then every batch's
        view parameters in turn, so skipped batches replay their draws (on blank images of the same
        shape: the draws do not depend on pixel values); files of skipped batches are never loaded."""
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + epoch)
        skip = min(start, len(self))
        if self.images is not None:
            order = torch.randperm(self.n, generator=gen, device=self.device)
            blank = torch.zeros_like(self.images[:self.batch_size])
            for _ in range(skip):
                self.views(blank, gen)
            for step in range(skip, len(self)):
                yield self.views(self.images[order[step * self.batch_size:(step + 1) * self.batch_size]], gen)
            return
        cpu_gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        sampler = SkipFirst(RandomSampler(self.files, generator=cpu_gen), skip * self.batch_size)
        loader = DataLoader(self.files, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                            generator=cpu_gen, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        if skip:
            first = self.files[0]
            blank = torch.zeros((self.batch_size, *first.shape), dtype=first.dtype, device=self.device)
            for _ in range(skip):
                self.views(blank, gen)
        try:
            for images in loader:
                yield self.views(images.to(self.device, non_blocking=True), gen)
        except DataError as exc:
            raise _reraise_worker_error(exc) from None


def monitor_pairs(split: ImageSplit, recipe: ViewRecipe, count: int,
                  batched: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """``count`` fixed images of ``split`` and one pair of views of each, drawn once with a fixed seed by
    the same implementation as training (on the CPU, so they are the same on every device)."""
    idx = fixed_subset(len(split), count)
    chosen = split.subset(idx)
    if batched:
        load = round(recipe.size / split.eval_crop)
        images = (chosen.images if chosen.images is not None
                  else torch.stack([chosen.resized(i, load) for i in range(len(chosen))]))
        x_a, x_b = BatchedViews(recipe)(images, torch.Generator().manual_seed(MONITOR_VIEW_SEED))
    else:
        pairs = TwoViewDataset(chosen, recipe, MONITOR_VIEW_SEED)
        views = [pairs[i] for i in range(len(chosen))]
        x_a, x_b = torch.stack([v[0] for v in views]), torch.stack([v[1] for v in views])
    return x_a, x_b, chosen.labels


def _monitor(train: ImageSplit, test: ImageSplit | None, recipe: ViewRecipe, wanted: int,
             batched: bool) -> tuple[tuple[Tensor, Tensor, Tensor | None], str | None]:
    """The MI-monitor pairs: from the test split when it holds ``wanted`` images (or at least as many as
    the training split), else from the training split; fewer than ``wanted`` pairs only when the data has
    fewer images, which the returned note says (else None)."""
    source, where = (test, "test") if test is not None and len(test) >= min(wanted, len(train)) else (train, "training")
    count = min(wanted, len(source))
    note = None
    if count < wanted:
        note = (f"MI monitor set of {count} pairs from the {where} images (--monitor_size {wanted} reduced: the "
                f"dataset has {len(source)} {where} images)")
    return monitor_pairs(source, recipe, count, batched), note


def build_image_bundle(name: str, train: ImageSplit, test: ImageSplit | None, num_classes: int | None,
                       cfg, device: torch.device, seed: int, notes: list[str] | None = None) -> DataBundle:
    """Assemble the DataBundle: subsets, recipe, view loader, evaluation sets and monitor pairs.
    ``extras["notes"]``: the values fitted to a small dataset (the trainer prints them)."""
    notes = list(notes or [])
    train = train.subset(fixed_subset(len(train), cfg.train_subset))
    if test is not None:
        test = test.subset(fixed_subset(len(test), cfg.test_subset))
    if cfg.no_labels:
        num_classes, test = None, None
        train = ImageSplit(train.channels, train.images, train.files, None, train.eval_crop)
    if cfg.num_classes is not None and num_classes is not None and cfg.num_classes != num_classes:
        raise DataError(f"--num_classes: {name} at {cfg.data_dir} has {num_classes} classes (got {cfg.num_classes})")
    if len(train) < cfg.batch_size:
        raise DataError(f"--batch_size: {name} has {len(train)} training images, fewer than one batch "
                        f"of {cfg.batch_size}")
    recipe = recipe_for(cfg, name, train.channels)
    loader_cls = BatchedViewLoader if cfg.gpu_augment else WorkerViewLoader
    views = loader_cls(train, recipe, cfg.batch_size, cfg.num_workers, seed, device)
    (m_a, m_b, m_labels), note = _monitor(train, test, recipe, cfg.monitor_size or 2048, cfg.gpu_augment)
    notes += [note] if note else []
    on_disk = train.files is not None
    return DataBundle(
        name=name, input_shape=(train.channels, recipe.size, recipe.size), num_classes=num_classes,
        train_views=views,
        probe_train=EvalImages(train, recipe) if test is not None else None,
        probe_test=EvalImages(test, recipe) if test is not None else None,
        monitor_views=(m_a.to(device), m_b.to(device)), monitor_labels=m_labels,
        extras={"eval_workers": cfg.num_workers if on_disk else 0, "recipe": recipe, "notes": notes},
    )
