"""Augmentation recipes and their two implementations: batched ops against torchvision's per-image
functional ops, independence of the batched path's per-image parameters, and equal distributions of
crop scale and flip between the two paths."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from scipy.stats import ks_2samp
from torchvision.transforms.v2 import functional as TF

from mimax.data import tensor_ops as ops
from mimax.data.views import BatchedViews, TorchvisionViews, make_recipe


def images(n: int = 6, size: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("op, reference, low, high", [
    (ops.adjust_brightness, TF.adjust_brightness, 0.2, 1.8),
    (ops.adjust_contrast, TF.adjust_contrast, 0.2, 1.8),
    (ops.adjust_saturation, TF.adjust_saturation, 0.2, 1.8),
    (ops.adjust_hue, TF.adjust_hue, -0.5, 0.5),
])
def test_color_ops_match_torchvision_per_image(op, reference, low, high):
    x = images()
    factors = torch.linspace(low, high, len(x))
    out = op(x, factors)
    for i in range(len(x)):
        torch.testing.assert_close(out[i], reference(x[i], factors[i].item()), atol=2e-5, rtol=0)


def test_blur_solarize_grayscale_match_torchvision():
    x = images()
    sigmas = torch.linspace(0.2, 2.0, len(x))
    out = ops.gaussian_blur(x, sigmas, 5)
    for i in range(len(x)):
        torch.testing.assert_close(out[i], TF.gaussian_blur(x[i], [5, 5], [sigmas[i].item()] * 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(ops.solarize(x), TF.solarize(x, 0.5))
    torch.testing.assert_close(ops.grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6, rtol=0)


def test_color_jitter_applies_each_images_own_order():
    x = images(2)
    factors = torch.tensor([[1.3, 0.6, 1.5, 0.1], [0.7, 1.4, 0.5, -0.2]])
    order = torch.tensor([[3, 0, 2, 1], [1, 2, 0, 3]])
    out = ops.color_jitter(x, factors, order, torch.tensor([True, True]))
    names = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(2):
        ref = x[i]
        for k in order[i].tolist():
            ref = names[k](ref, factors[i, k].item())
        torch.testing.assert_close(out[i], ref, atol=2e-5, rtol=0)
    untouched = ops.color_jitter(x, factors, order, torch.tensor([False, True]))
    assert torch.equal(untouched[0], x[0])


def test_gathered_and_selected_forms_give_the_same_images():
    """The CPU gathers the images an op applies to; accelerators compute all and select with ``where``
    (no host synchronization). Both forms must give the same images."""
    x = images(8)
    gen = torch.Generator().manual_seed(3)
    factors = torch.rand(8, 4, generator=gen) + 0.5
    order = torch.rand(8, 4, generator=gen).argsort(dim=1).masked_fill_(torch.rand(8, 4, generator=gen) < 0.2, -1)
    apply = torch.rand(8, generator=gen) < 0.6
    torch.testing.assert_close(ops.color_jitter(x, factors, order, apply, compact=False),
                               ops.color_jitter(x, factors, order, apply, compact=True), atol=1e-6, rtol=0)
    sigma = torch.rand(8, generator=gen) + 0.1
    for fn in (lambda v, idx: ops.gaussian_blur(v, sigma[idx], 5), lambda v, _: ops.grayscale(v),
               lambda v, _: ops.solarize(v)):
        torch.testing.assert_close(ops.apply_where(x, apply, fn, compact=False),
                                   ops.apply_where(x, apply, fn, compact=True), atol=1e-6, rtol=0)
    none = torch.zeros(8, dtype=torch.bool)
    assert torch.equal(ops.apply_where(x, none, lambda v, _: ops.grayscale(v), compact=False), x)


def test_batched_views_are_the_same_in_the_accelerator_form(monkeypatch):
    recipe = make_recipe("simclr", "CIFAR10", 16, 3)
    raw = (images(16, size=20) * 255).to(torch.uint8)
    gathered = BatchedViews(recipe)(raw, torch.Generator().manual_seed(0))
    monkeypatch.setattr(ops, "compacts", lambda x: False)
    selected = BatchedViews(recipe)(raw, torch.Generator().manual_seed(0))
    for a, b in zip(gathered, selected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_crop_matches_torchvision_resized_crop_when_upsampling():
    x = images(4, size=24)
    boxes = torch.tensor([[0, 0, 24, 24], [3, 5, 10, 12], [10, 2, 14, 9], [0, 13, 11, 11]], dtype=torch.float32)
    flip = torch.tensor([False, True, False, True])
    out = ops.resized_crop_flip(x, boxes, flip, 24)
    for i, (t, left, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(x[i], t, left, h, w, [24, 24], antialias=False)
        torch.testing.assert_close(out[i], ref.flip(-1) if flip[i] else ref, atol=1e-5, rtol=0)


def test_recipes():
    simclr = make_recipe("simclr", "CIFAR10", 32, 3)
    assert simclr.views[0] == simclr.views[1] and simclr.views[0].blur_p == 0  # no blur at 32 px
    assert make_recipe("simclr", "ImageNet100", 224, 3).views[0].blur_p == 0.5
    byol = make_recipe("byol", "TinyImageNet", 64, 3)
    assert (byol.views[0].blur_p, byol.views[1].blur_p) == (1.0, 0.1)
    assert (byol.views[0].solarize_p, byol.views[1].solarize_p) == (0.0, 0.2)
    gray = make_recipe("byol", "FashionMNIST", 28, 1)
    assert gray.views[0].jitter[2:] == (0.0, 0.0) and gray.views[0].grayscale_p == 0 and gray.mean == (0.2860,)
    weak = make_recipe("weak", "CIFAR10", 32, 3)
    assert weak.views[0].jitter_p == 0 and weak.views[0].flip_p == 0.5


def test_batched_views_draw_independent_parameters_per_image():
    same = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    batch = same.expand(64, -1, -1, -1)
    a, b = BatchedViews(make_recipe("byol", "CIFAR10", 32, 3))(batch, torch.Generator().manual_seed(1))
    flat = a.flatten(1)
    distinct = torch.cdist(flat, flat) + torch.eye(64) * 1e9
    assert distinct.min() > 1e-3  # every pair of the 64 views of one image differs
    assert not torch.allclose(a, b)
    boxes = ops.sample_crop_boxes(512, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(2),
                                  torch.device("cpu"))
    assert len({tuple(r) for r in boxes.tolist()}) > 400


def ramp_image(size: int) -> torch.Tensor:
    """uint8 image whose channel 0 encodes x and channel 1 encodes y (pixel centers)."""
    ramp = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    img = torch.zeros(3, size, size)
    img[0] = ramp.view(1, -1)
    img[1] = ramp.view(-1, 1)
    return (img * 255).round().to(torch.uint8)


def crop_scale_and_flip(views: torch.Tensor, recipe) -> tuple[torch.Tensor, torch.Tensor]:
    """Recover the crop's area fraction and the flip from views of :func:`ramp_image`."""
    mean = torch.tensor(recipe.mean).view(1, 3, 1, 1)
    std = torch.tensor(recipe.std).view(1, 3, 1, 1)
    x = views * std + mean
    s = x.shape[-1]
    mid = s // 2
    dx = x[:, 0, mid, -1] - x[:, 0, mid, 0]
    dy = x[:, 1, -1, mid] - x[:, 1, 0, mid]
    return (dx.abs() * dy.abs() * (s / (s - 1)) ** 2), dx < 0


def test_both_paths_give_the_same_crop_scale_and_flip_distribution():
    n, size = 1500, 64
    recipe = make_recipe("weak", "ImageNet", size, 3)  # crop + flip only: both are read back exactly
    image = ramp_image(size)
    per_image = TorchvisionViews(recipe)
    torch.manual_seed(0)
    tv = torch.stack([per_image(image)[0] for _ in range(n)])
    batched = BatchedViews(recipe)(image.expand(n, -1, -1, -1), torch.Generator().manual_seed(0))[0]
    tv_scale, tv_flip = crop_scale_and_flip(tv, recipe)
    bt_scale, bt_flip = crop_scale_and_flip(batched, recipe)
    assert ks_2samp(tv_scale.numpy(), bt_scale.numpy()).pvalue > 1e-3
    assert tv_scale.min() > 0.07 and tv_scale.max() < 1.02 and bt_scale.min() > 0.07
    for flips in (tv_flip, bt_flip):  # Binomial(1500, 0.5): 5 standard deviations is +-0.065
        assert abs(flips.float().mean().item() - 0.5) < 0.065
    # the comparison has power: a different scale range is told apart
    spec = replace(recipe.views[0], crop_scale=(0.2, 1.0))
    narrow = replace(recipe, views=(spec, spec))
    other = BatchedViews(narrow)(image.expand(n, -1, -1, -1), torch.Generator().manual_seed(0))[0]
    assert ks_2samp(tv_scale.numpy(), crop_scale_and_flip(other, recipe)[0].numpy()).pvalue < 1e-6


def test_full_recipes_run_on_both_paths_with_expected_shapes():
    batch = (images(8, 28) * 255).to(torch.uint8)
    for kind in ("simclr", "byol"):
        recipe = make_recipe(kind, "ImageNet", 24, 3)
        a, b = BatchedViews(recipe)(batch, torch.Generator().manual_seed(0))
        c, d = TorchvisionViews(recipe)(batch[0])
        assert a.shape == b.shape == (8, 3, 24, 24) and c.shape == d.shape == (3, 24, 24)
        assert torch.isfinite(a).all() and torch.isfinite(c).all()


def test_augmentation_flag_and_view_recipe_select_the_recipe():
    from mimax.config import resolve
    from mimax.data.views import recipe_for

    def kind(**kw):
        return recipe_for(resolve({"dataset": "Digits", **kw}), "Digits", 1).name

    assert kind(model_name="BYOL") == "weak"  # without --augmentation
    assert kind(model_name="BYOL", augmentation=True) == "byol"  # the method's declared family
    assert kind(model_name="SimCLR", augmentation=True) == "simclr"
    assert kind(model_name="BYOL", augmentation=True, view_recipe="simclr") == "simclr"


def test_crop_min_scale_sets_the_smallest_crop_area_on_both_paths():
    """``--crop_min_scale`` reaches both implementations: crop areas read back from a ramp image lie in
    (min scale, 1), and their smallest values sit near the bound (the default 0.08 would go far below)."""
    from mimax.config import resolve
    from mimax.data.views import recipe_for

    n, size = 600, 64
    cfg = resolve({"dataset": "Digits", "image_size": size, "crop_min_scale": 0.5})  # weak: crop + flip
    recipe = recipe_for(cfg, "ImageNet", 3)
    assert [v.crop_scale for v in recipe.views] == [(0.5, 1.0), (0.5, 1.0)]
    default = resolve({"dataset": "Digits", "image_size": size})
    assert recipe_for(default, "ImageNet", 3).views[0].crop_scale == (0.08, 1.0)
    image = ramp_image(size)
    torch.manual_seed(0)
    per_image = TorchvisionViews(recipe)
    tv = torch.stack([per_image(image)[0] for _ in range(n)])
    batched = BatchedViews(recipe)(image.expand(n, -1, -1, -1), torch.Generator().manual_seed(0))[0]
    for views in (tv, batched):
        scale, _ = crop_scale_and_flip(views, recipe)
        assert scale.min() > 0.47 and scale.max() < 1.02 and scale.min() < 0.56
