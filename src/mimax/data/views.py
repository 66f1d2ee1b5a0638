"""Augmentation recipes and the two implementations that draw views from them.

A :class:`ViewRecipe` fixes, for each of the two views, the random ops and their parameters:

- ``simclr`` (symmetric; Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
  Representations", Appendix A): random resized crop, scale (0.08, 1), aspect (3/4, 4/3); horizontal
  flip p = 0.5; colour jitter p = 0.8 with strength s, (brightness, contrast, saturation, hue) =
  (0.8 s, 0.8 s, 0.8 s, 0.2 s), s = 1 at ImageNet scale and s = 0.5 for small images (their CIFAR-10
  setting, Appendix B.9); grayscale p = 0.2; Gaussian blur p = 0.5, sigma in (0.1, 2), kernel 10% of
  the image side (omitted for small images, as SimCLR does on CIFAR-10). Same recipe for both views.
- ``byol`` (asymmetric; Grill et al., 2020, "Bootstrap Your Own Latent", Table 6): crop and flip as
  above; colour jitter p = 0.8 with (0.4, 0.4, 0.2, 0.1); grayscale p = 0.2; blur p = (1.0, 0.1) for
  (view 1, view 2); solarization p = (0.0, 0.2). Small images drop the blur, as solo-learn's CIFAR
  BYOL/Barlow/VICReg configs do (blur probability 0 for 32 px).
- ``weak`` (without ``--augmentation``): random resized crop with the same scale range + flip only.

"Small images" are those under 64 px: blur with a kernel of 10% of the side (3 px at 32 px) does next to
nothing and SimCLR/solo-learn turn it off there. Grayscale datasets (1 channel) have no saturation, hue or
grayscale ops. Digits (8 px) use crop scale (0.5, 1), our choice: 8% of an 8x8 image is ~2 pixels.

``--augmentation`` selects the full recipe (``--view_recipe``: ``auto`` uses the method's declared
``view_recipe`` class attribute, else ``simclr``); without it both views use ``weak``.

Two implementations behind one interface, each taking uint8 images (C, H, W) and returning two
normalized float views:
- :func:`torchvision_view` builds a per-image ``torchvision.transforms.v2`` pipeline (run in DataLoader
  workers);
- :class:`BatchedViews` applies the same recipe to a uint8 batch on its device, drawing independent
  parameters per image (``--gpu_augment``; :mod:`mimax.data.tensor_ops`). Its crop is bilinear without
  antialiasing (grid sampling), torchvision's is antialiased; the parameter distributions are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import PIL.Image
import torch
from torch import Tensor
from torchvision.transforms import v2

from mimax.data import tensor_ops as ops

# Per-channel mean/std of the training split, on [0, 1] pixels.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "CIFAR10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "CIFAR100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "ImageNet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision's ImageNet constants
    "MNIST": ((0.1307,), (0.3081,)),
    "FashionMNIST": ((0.2860,), (0.3530,)),
    "Digits": ((0.3053,), (0.3759,)),  # scikit-learn digits / 16; checked by tests/data/test_views.py
}
# TinyImageNet, ImageNet100 and user folders use the ImageNet constants.
NORMALIZATION_FOR = {"TinyImageNet": "ImageNet", "ImageNet100": "ImageNet", "ImageFolder": "ImageNet",
                     "Folder": "ImageNet"}


@dataclass(frozen=True)
class ViewSpec:
    """The random ops of one view and their parameters (probabilities 0 mean 'off')."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.0
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # brightness, contrast, saturation, hue
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


@dataclass(frozen=True)
class ViewRecipe:
    name: str
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    views: tuple[ViewSpec, ViewSpec] = field(default=(ViewSpec(), ViewSpec()))

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def blur_kernel(self) -> int:
        """10% of the side, odd (SimCLR Appendix A)."""
        k = max(3, int(0.1 * self.size))
        return k if k % 2 else k + 1


def normalization(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return NORMALIZATION[NORMALIZATION_FOR.get(dataset, dataset)]


def make_recipe(kind: str, dataset: str, size: int, channels: int, crop_min_scale: float | None = None) -> ViewRecipe:
    """The ``kind`` (weak, simclr, byol) recipe for ``dataset`` at ``size`` px with ``channels``; the random
    resized crop draws areas in ``(crop_min_scale, 1)`` of the image (default 0.08, 0.5 below 16 px)."""
    mean, std = normalization(dataset)
    if len(mean) != channels:
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    scale = (crop_min_scale, 1.0) if crop_min_scale is not None else (0.5, 1.0) if size < 16 else (0.08, 1.0)
    base = ViewSpec(crop_scale=scale)
    small, color = size < 64, channels == 3
    if kind == "weak":
        return ViewRecipe(kind, size, mean, std, (base, base))
    if kind == "simclr":
        s = 0.5 if small else 1.0
        jitter = (0.8 * s, 0.8 * s, 0.8 * s if color else 0.0, 0.2 * s if color else 0.0)
        view = replace(base, jitter_p=0.8, jitter=jitter, grayscale_p=0.2 if color else 0.0,
                       blur_p=0.0 if small else 0.5)
        return ViewRecipe(kind, size, mean, std, (view, view))
    if kind == "byol":
        jitter = (0.4, 0.4, 0.2 if color else 0.0, 0.1 if color else 0.0)
        common = replace(base, jitter_p=0.8, jitter=jitter, grayscale_p=0.2 if color else 0.0)
        first = replace(common, blur_p=0.0 if small else 1.0, solarize_p=0.0)
        second = replace(common, blur_p=0.0 if small else 0.1, solarize_p=0.2)
        return ViewRecipe(kind, size, mean, std, (first, second))
    raise ValueError(f"unknown view recipe {kind!r}; expected weak, simclr or byol")


def recipe_for(cfg, dataset: str, channels: int) -> ViewRecipe:
    """The recipe a run uses: ``weak`` without ``--augmentation``, else ``--view_recipe`` (which config
    resolution sets to the method's family when left to auto)."""
    kind = cfg.view_recipe if cfg.augmentation else "weak"
    return make_recipe(kind, dataset, cfg.image_size, channels, getattr(cfg, "crop_min_scale", None))


def torchvision_view(recipe: ViewRecipe, view: int) -> v2.Compose:
    """Per-image torchvision v2 pipeline of view ``view`` (0 or 1): an image (PIL, NumPy HWC, or a uint8 or
    [0, 1] float tensor (C, H, W)) -> a normalized float tensor (C, size, size)."""
    spec = recipe.views[view]
    steps: list = [v2.ToImage(),
                   v2.RandomResizedCrop(recipe.size, scale=spec.crop_scale, ratio=spec.crop_ratio, antialias=True)]
    if spec.flip_p:
        steps.append(v2.RandomHorizontalFlip(spec.flip_p))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if spec.jitter_p:
        steps.append(v2.RandomApply([v2.ColorJitter(*spec.jitter)], p=spec.jitter_p))
    if spec.grayscale_p:
        steps.append(v2.RandomGrayscale(spec.grayscale_p))
    if spec.blur_p:
        steps.append(v2.RandomApply([v2.GaussianBlur(recipe.blur_kernel, spec.blur_sigma)], p=spec.blur_p))
    if spec.solarize_p:
        steps.append(v2.RandomSolarize(0.5, p=spec.solarize_p))
    steps += [v2.Normalize(recipe.mean, recipe.std), v2.ToPureTensor()]
    return v2.Compose(steps)


class TwoViewTransform:
    """A recipe as a torchvision-style transform: ``transform(image) -> (view_a, view_b)``.

    ``image`` is a PIL image, a NumPy array (H, W, C) or a tensor (C, H, W), uint8 or float in [0, 1]; the
    views are normalized float tensors (C, size, size). Drop it into any dataset, e.g.
    ``torchvision.datasets.CIFAR10(root, transform=TwoViewTransform("byol", size=32, dataset="CIFAR10"))``
    gives ``((view_a, view_b), label)`` items. Randomness comes from the global torch RNG, as for every
    torchvision transform.

    ``recipe`` is ``"simclr"``, ``"byol"``, ``"weak"`` or a :class:`ViewRecipe`; ``dataset`` picks the
    normalization constants (:data:`NORMALIZATION`; ``"ImageNet"`` by default) unless ``mean``/``std`` are
    given; ``channels`` is 3 (RGB) or 1 (PIL images are converted to it).
    """

    def __init__(self, recipe: str | ViewRecipe = "simclr", size: int = 224, dataset: str = "ImageNet",
                 channels: int = 3, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
        for name, value in (("size", size), ("channels", channels)):  # refused here, not at the first image
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(recipe, str):
            if dataset not in NORMALIZATION and dataset not in NORMALIZATION_FOR:
                known = ", ".join(sorted(NORMALIZATION) + sorted(NORMALIZATION_FOR))
                raise ValueError(f"unknown dataset {dataset!r} for the normalization; expected one of {known}, "
                                 "or give mean and std")
            recipe = make_recipe(recipe, dataset, size, channels)
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if mean is not None:
            if len(mean) != recipe.channels or len(std) != recipe.channels:
                raise ValueError(f"mean and std need {recipe.channels} values (one per channel)")
            recipe = replace(recipe, mean=tuple(mean), std=tuple(std))
        self.recipe = recipe
        self.pipelines = (torchvision_view(recipe, 0), torchvision_view(recipe, 1))

    def __call__(self, image) -> tuple[Tensor, Tensor]:
        image = self._as_channels(image)
        return self.pipelines[0](image), self.pipelines[1](image)

    def _as_channels(self, image):
        channels = self.recipe.channels
        if isinstance(image, PIL.Image.Image):  # convert palette/alpha/grayscale images to the recipe's channels
            want = "RGB" if channels == 3 else "L"
            return image if image.mode == want else image.convert(want)
        got = image.shape[0] if isinstance(image, Tensor) else (image.shape[2] if image.ndim == 3 else 1)
        if got != channels:
            raise ValueError(f"expected an image with {channels} channel(s), got shape {tuple(image.shape)}")
        return image

    def __repr__(self) -> str:
        r = self.recipe
        return f"{type(self).__name__}(recipe={r.name!r}, size={r.size}, mean={r.mean}, std={r.std})"


TorchvisionViews = TwoViewTransform  # the name the data pipeline uses


@dataclass
class ViewParams:
    """The random parameters of one view for a batch of images, one row per image: crop boxes
    ``(top, left, h, w)`` (n, 4), flips, colour-jitter switches, factors (n, 4) and orders (n, 4),
    grayscale/blur/solarize switches and blur sigmas. Rows are independent draws, so any subset of
    rows is the parameters of the corresponding images."""

    boxes: Tensor
    flip: Tensor
    jitter: Tensor
    factors: Tensor
    order: Tensor
    gray: Tensor
    blur: Tensor
    sigma: Tensor
    solarize: Tensor

    def rows(self, lo: int, hi: int) -> ViewParams:
        """Rows ``[lo, hi)``."""
        return ViewParams(*(getattr(self, f.name)[lo:hi] for f in fields(self)))

    def to(self, device: torch.device) -> ViewParams:
        """The table on ``device``: one packed float32 (n, 18) copy (asynchronous from pinned memory to
        CUDA, so no host synchronization per field); every value is exact in float32."""
        if self.boxes.device == device:
            return self
        parts = [getattr(self, f.name).float().reshape(self.boxes.shape[0], -1) for f in fields(self)]
        packed = torch.cat(parts, dim=1)
        if packed.device.type == "cpu" and device.type == "cuda":
            packed = packed.pin_memory()
        packed = packed.to(device, non_blocking=True)
        boxes, flip, jitter, factors, order, gray, blur, sigma, solarize = packed.split(
            [4, 1, 1, 4, 4, 1, 1, 1, 1], dim=1)
        return ViewParams(boxes, flip[:, 0] > 0.5, jitter[:, 0] > 0.5, factors, order.long(), gray[:, 0] > 0.5,
                          blur[:, 0] > 0.5, sigma[:, 0].contiguous(), solarize[:, 0] > 0.5)


class BatchedViews:
    """Two views of a uint8 batch (B, C, H, W) on its own device, independent random parameters per
    image. :meth:`draw` draws the parameter table of ``n`` images (the loader draws it on the CPU, so a
    seed gives the same parameters on every device), :meth:`apply` applies it; calling the object does
    both with a generator on the batch's device."""

    def __init__(self, recipe: ViewRecipe):
        self.recipe = recipe
        self._normalization: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __call__(self, images: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.apply(images, self.draw(images.shape[0], images.shape[2], images.shape[3], gen))

    def draw(self, n: int, height: int, width: int, gen: torch.Generator) -> tuple[ViewParams, ViewParams]:
        """The parameters of both views of ``n`` images of ``height`` x ``width`` pixels, drawn from ``gen``
        on its device."""
        return self._draw(0, n, height, width, gen), self._draw(1, n, height, width, gen)

    def _draw(self, view: int, n: int, height: int, width: int, gen: torch.Generator) -> ViewParams:
        spec, dev = self.recipe.views[view], gen.device
        boxes = ops.sample_crop_boxes(n, height, width, spec.crop_scale, spec.crop_ratio, gen, dev)
        flip = torch.rand(n, generator=gen, device=dev) < spec.flip_p
        jitter = torch.rand(n, generator=gen, device=dev) < spec.jitter_p
        factors = torch.stack([ops.uniform(n, max(0.0, 1 - s), 1 + s, gen, dev) for s in spec.jitter[:3]]
                              + [ops.uniform(n, -spec.jitter[3], spec.jitter[3], gen, dev)], dim=1)
        order = torch.rand(n, 4, generator=gen, device=dev).argsort(dim=1)
        for op_index, strength in enumerate(spec.jitter):  # an op of strength 0 is skipped
            if strength <= 0:
                order = order.masked_fill(order == op_index, -1)
        gray = torch.rand(n, generator=gen, device=dev) < spec.grayscale_p
        blur = torch.rand(n, generator=gen, device=dev) < spec.blur_p
        sigma = ops.uniform(n, *spec.blur_sigma, gen, dev)
        solarize = torch.rand(n, generator=gen, device=dev) < spec.solarize_p
        return ViewParams(boxes, flip, jitter, factors, order, gray, blur, sigma, solarize)

    def apply(self, images: Tensor, params: tuple[ViewParams, ViewParams]) -> tuple[Tensor, Tensor]:
        """The two normalized float views of the uint8 ``images`` under ``params`` (one row per image)."""
        if params[0].boxes.shape[0] != images.shape[0]:
            raise ValueError(f"{params[0].boxes.shape[0]} parameter rows for {images.shape[0]} images")
        x = images.float().div_(255)
        return self.view(x, 0, params[0]), self.view(x, 1, params[1])

    def view(self, x: Tensor, view: int, p: ViewParams) -> Tensor:
        spec, recipe, dev = self.recipe.views[view], self.recipe, x.device
        p = p.to(dev)
        out = ops.resized_crop_flip(x, p.boxes, p.flip, recipe.size)
        if spec.jitter_p:
            out = ops.color_jitter(out, p.factors, p.order, p.jitter)
        if spec.grayscale_p:
            out = ops.apply_where(out, p.gray, lambda v, _: ops.grayscale(v))
        if spec.blur_p:
            out = ops.apply_where(out, p.blur, lambda v, idx: ops.gaussian_blur(v, p.sigma[idx], recipe.blur_kernel))
        if spec.solarize_p:
            out = ops.apply_where(out, p.solarize, lambda v, _: ops.solarize(v))
        mean, std = self.normalization(dev)
        return (out - mean) / std

    def normalization(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """The recipe's mean and std as (1, C, 1, 1) tensors on ``device``, copied there once (a copy
        from the host per batch would synchronize with the device)."""
        if device not in self._normalization:
            self._normalization[device] = tuple(torch.tensor(v).view(1, -1, 1, 1).to(device)
                                                for v in (self.recipe.mean, self.recipe.std))
        return self._normalization[device]
