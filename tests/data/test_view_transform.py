"""Each augmentation recipe as a standalone torchvision-style transform (``mimax.TwoViewTransform``):
PIL images of any mode, NumPy arrays and uint8/float tensors in, two normalized views out; inside a
torchvision dataset read from image files on disk and a DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from image_fixtures import write_class_tree
from PIL import Image
from torch.utils.data import DataLoader

import mimax
from mimax.data.views import NORMALIZATION


@pytest.mark.parametrize("recipe", ["simclr", "byol", "weak"])
def test_every_input_kind_gives_two_views(recipe):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    t = mimax.TwoViewTransform(recipe, size=24, dataset="CIFAR10")
    inputs = {"pil": Image.fromarray(pixels), "pil_rgba": Image.fromarray(pixels).convert("RGBA"),
              "pil_palette": Image.fromarray(pixels).convert("P"), "pil_gray": Image.fromarray(pixels).convert("L"),
              "numpy": pixels, "uint8": torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
              "float": torch.from_numpy(pixels).permute(2, 0, 1).float() / 255}
    for name, image in inputs.items():
        a, b = t(image)
        assert type(a) is torch.Tensor and type(b) is torch.Tensor, name  # plain tensors, not tv_tensors
        assert a.shape == b.shape == (3, 24, 24) and a.dtype == torch.float32, name
        assert not torch.equal(a, b) or recipe == "weak", name  # two random views


def test_pil_and_tensor_inputs_give_the_same_views():
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    t = mimax.TwoViewTransform("byol", size=32, dataset="CIFAR10")
    torch.manual_seed(5)
    from_pil = t(Image.fromarray(pixels))
    torch.manual_seed(5)
    from_tensor = t(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
    for p, q in zip(from_pil, from_tensor):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_normalization_constants_are_applied():
    # crop + flip of a constant image is the same constant: the output is (c / 255 - mean) / std per channel
    image = Image.new("RGB", (16, 16), (200, 100, 50))
    a, b = mimax.TwoViewTransform("weak", size=8, dataset="CIFAR10")(image)
    mean, std = NORMALIZATION["CIFAR10"]
    for c, value in enumerate((200, 100, 50)):
        want = (value / 255 - mean[c]) / std[c]
        assert torch.allclose(a[c], torch.full((8, 8), want), atol=1e-5) and torch.allclose(b[c], a[c])
    gray = mimax.TwoViewTransform("simclr", size=8, channels=1, mean=(0.5,), std=(0.25,))
    x, y = gray(Image.new("RGB", (10, 10), (255, 255, 255)))
    assert x.shape == (1, 8, 8)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown dataset 'Nope'"):
        mimax.TwoViewTransform("simclr", dataset="Nope")
    with pytest.raises(ValueError, match="3 channel"):
        mimax.TwoViewTransform("simclr", size=8)(torch.zeros(1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown view recipe"):
        mimax.TwoViewTransform("moco", size=8)
    for bad in (0, -3, 8.5, True):  # size 0 was accepted, and torch failed at the first image
        with pytest.raises(ValueError, match="size must be an integer >= 1"):
            mimax.TwoViewTransform("simclr", size=bad)
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        mimax.TwoViewTransform("simclr", size=8, channels=0)


def test_in_a_torchvision_image_folder_and_dataloader(tmp_path):
    write_class_tree(tmp_path, ["cat", "dog"], per_class=3, size=(40, 28))  # PNG files on disk
    data = torchvision.datasets.ImageFolder(tmp_path, transform=mimax.TwoViewTransform("simclr", size=16))
    (a, b), y = next(iter(DataLoader(data, batch_size=4, shuffle=False)))
    assert a.shape == b.shape == (4, 3, 16, 16) and y.tolist() == [0, 0, 0, 1]
    assert torch.isfinite(a).all() and not torch.equal(a, b)
