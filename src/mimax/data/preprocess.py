"""The evaluation preprocessing of an image run: what a trained backbone expects as input, outside mimax.

It is the geometry and normalization of the linear probe and kNN (:class:`mimax.data.images.EvalImages`):
decode upright (EXIF orientation applied; 16-bit grey scaled to 8 bits: :func:`mimax.data.images.upright_8bit`)
to RGB (3 channels) or luma (1 channel); resize the shorter side to ``round(size / crop)``
(antialiased, bilinear); center-crop ``size`` x ``size``; scale pixels to [0, 1]; normalize per channel with
the dataset's mean and std. ``crop`` is 0.875 for ImageNet-style photos of varying size (ImageNet100,
ImageFolder, Folder: 256 -> 224) and 1 for the fixed-size datasets. ``mimax export`` prints it and writes
it next to the exported backbone; ``mimax embed`` applies it to the files it embeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mimax.data.images import IMAGENET_EVAL_CROP, decode_image, resize_center
from mimax.data.views import normalization

EVAL_CROP = {"ImageNet100": IMAGENET_EVAL_CROP, "ImageFolder": IMAGENET_EVAL_CROP, "Folder": IMAGENET_EVAL_CROP}


@dataclass(frozen=True)
class EvalPreprocessing:
    channels: int
    size: int
    crop: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def resize(self) -> int:
        return round(self.size / self.crop)

    def describe(self) -> str:
        mode = {3: "RGB", 1: "grayscale (luma)"}.get(self.channels, f"{self.channels} channels")
        return (f"{mode}, turned upright by its EXIF orientation; resize the shorter side to {self.resize} px "
                f"(bilinear, antialiased); center-crop {self.size}x{self.size}; scale to [0, 1]; normalize with mean "
                f"{fmt(self.mean)} and std "
                f"{fmt(self.std)}")

    def torchvision_code(self) -> str:
        """The same preprocessing as torchvision transforms, for an 8-bit PIL image."""
        convert = "RGB" if self.channels == 3 else "L"
        return (f"T.Compose([T.Lambda(lambda im: ImageOps.exif_transpose(im).convert({convert!r})), "
                f"T.Resize({self.resize}, antialias=True), "
                f"T.CenterCrop({self.size}), T.ToTensor(), T.Normalize({fmt(self.mean)}, {fmt(self.std)})])")

    def __call__(self, image: Tensor) -> Tensor:
        """uint8 (C, H, W) -> normalized float (C, size, size)."""
        x = resize_center(image, self.size, self.crop).float().div_(255)
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (x - mean) / std

    def load(self, path: Path) -> Tensor:
        """An image file, decoded (DataError naming the file if it cannot be) and preprocessed."""
        return self(decode_image(Path(path), self.channels))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalPreprocessing:
        return cls(int(data["channels"]), int(data["size"]), float(data["crop"]), tuple(data["mean"]),
                   tuple(data["std"]))


def fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ("," if len(values) == 1 else "") + ")"


def eval_preprocessing(dataset: str, input_shape: tuple[int, ...]) -> EvalPreprocessing:
    """The evaluation preprocessing of a run on ``dataset`` whose model input is ``input_shape`` (C, H, W)."""
    channels, size = int(input_shape[0]), int(input_shape[-1])
    mean, std = normalization(dataset)
    if len(mean) != channels:  # as mimax.data.views.make_recipe: channel-averaged constants
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    return EvalPreprocessing(channels, size, EVAL_CROP.get(dataset, 1.0), tuple(mean), tuple(std))
