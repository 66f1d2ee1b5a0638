"""Batched image operations with one random parameter per image, for :class:`mimax.data.views.BatchedViews`.

Why our own: torchvision's functional ops (``v2.functional.adjust_hue``, ``resized_crop``, ...) take one
parameter per call, so a batch would get one crop, one jitter and one blur for all its images. These
functions take a parameter *per image* and reproduce torchvision's definitions (cited per function) on
float images in [0, 1] of shape (B, C, H, W), on whatever device the batch is on.

Selecting the images an op applies to has two forms with the same result per image. On the CPU the
selected images are gathered (``nonzero``) and only they are computed: fewer FLOPs, and the host is the
device. On an accelerator every image is computed and the selection is a ``where``: gathering would need
the number of selected images on the host, a synchronization per op that stalls the launch queue (a
training step's views would otherwise wait for the GPU dozens of times), while the extra elementwise work
is negligible there. :func:`compacts` decides; the views are bitwise the same either way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def compacts(x: Tensor) -> bool:
    """Whether ops on ``x`` gather their selected images (CPU) rather than compute all and select."""
    return x.device.type == "cpu"


def uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> Tensor:
    """``n`` draws from U[low, high)."""
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def sample_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                      gen: torch.Generator, device: torch.device, attempts: int = 10) -> Tensor:
    """``(n, 4)`` crop boxes ``(top, left, h, w)`` in pixels, drawn as torchvision's
    ``RandomResizedCrop``: area fraction ~ U(scale), log aspect ratio ~ U(log ratio); the first of
    ``attempts`` draws that fits the image is used, else the central crop clamped to ``ratio``."""
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=gen, device=device))
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(
        n, attempts, generator=gen, device=device)
    aspect = log_r.exp()
    w = (target * aspect).sqrt().round()
    h = (target / aspect).sqrt().round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 if none)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    any_fit = fits.any(dim=1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w = torch.where(any_fit, w, torch.full_like(w, fw))
    h = torch.where(any_fit, h, torch.full_like(h, fh))
    u = torch.rand(n, 2, generator=gen, device=device)
    top = torch.where(any_fit, (u[:, 0] * (height - h + 1)).floor(), ((height - h) / 2).round())
    left = torch.where(any_fit, (u[:, 1] * (width - w + 1)).floor(), ((width - w) / 2).round())
    return torch.stack([top, left, h, w], dim=1)


def _sample_positions(start: Tensor, length: Tensor, size: int, extent: int) -> Tensor:
    """(B, size) normalized sampling coordinates of a crop ``[start, start + length)`` resized to ``size``:
    output pixel o reads input coordinate ``start + (o + 0.5) length / size - 0.5`` (pixel centers,
    ``align_corners=False``), clamped to the crop's first/last pixel as resizing the cropped image does."""
    o = torch.arange(size, dtype=start.dtype, device=start.device) + 0.5
    pos = start.unsqueeze(1) + o * (length / size).unsqueeze(1) - 0.5
    pos = torch.maximum(torch.minimum(pos, (start + length - 1).unsqueeze(1)), start.unsqueeze(1))
    return (2 * pos + 1) / extent - 1


def resized_crop_flip(x: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Crop ``boxes`` (top, left, h, w) out of each image, resize to ``size`` x ``size`` (bilinear, as
    torchvision's ``resized_crop`` with ``antialias=False``; identical when upsampling) and mirror the
    images where ``flip``. One separable sampling grid per image, read by ``grid_sample``."""
    n, _, height, width = x.shape
    top, left, h, w = boxes.to(x.dtype).unbind(1)
    xs = _sample_positions(left, w, size, width)
    xs = torch.where(flip.unsqueeze(1), xs.flip(1), xs)
    ys = _sample_positions(top, h, size, height)
    grid = torch.stack([xs.unsqueeze(1).expand(n, size, size), ys.unsqueeze(2).expand(n, size, size)], dim=3)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: Tensor) -> Tensor:
    """Luma ``0.2989 R + 0.587 G + 0.114 B`` (B, 1, H, W); a 1-channel image is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _per_image(f: Tensor) -> Tensor:
    return f.view(-1, 1, 1, 1)


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    """``clamp(f x, 0, 1)`` (torchvision ``adjust_brightness``)."""
    return (x * _per_image(f)).clamp(0, 1)


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    """``clamp(f x + (1 - f) mean(gray(x)), 0, 1)``, the mean over the whole image (torchvision)."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return (_per_image(f) * x + (1 - _per_image(f)) * mean).clamp(0, 1)


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    """``clamp(f x + (1 - f) gray(x), 0, 1)`` (torchvision ``adjust_saturation``)."""
    if x.shape[1] == 1:
        return x
    return (_per_image(f) * x + (1 - _per_image(f)) * grayscale(x)).clamp(0, 1)


def adjust_hue(x: Tensor, f: Tensor) -> Tensor:
    """Rotate the hue: RGB -> HSV, ``h <- (h + f) mod 1``, HSV -> RGB (torchvision ``adjust_hue``).

    Written with masks as arithmetic (no ``torch.where``, slow on some CPU builds). Where max = min
    (gray pixels) the hue is irrelevant: the saturation is 0 and the pixel maps to itself."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    is_r = (maxc == r).to(x.dtype)
    is_g = (maxc == g).to(x.dtype) * (1 - is_r)
    is_b = 1 - is_r - is_g
    # hue in sextants (6 h): (g - b)/delta if max = r; 2 + (b - r)/delta if max = g; 4 + (r - g)/delta
    sextant = (is_r * (g - b) + is_g * (b - r) + is_b * (r - g)) / delta.clamp_min(1e-12) + 2 * is_g + 4 * is_b
    sextant = sextant + 6.0 * f.view(-1, 1, 1)
    # HSV -> RGB with v = max, v (1 - s) = min: channel k = max - delta clamp(min(p, 4 - p), 0, 1),
    # p = (n_k + 6 h) mod 6, n = (5, 3, 1) for (R, G, B)
    offsets = torch.arange(5.0, 0.0, -2.0, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)  # no host copy
    p = torch.remainder(offsets + sextant.unsqueeze(1), 6.0)
    weight = torch.minimum(p, 4.0 - p).clamp_(0, 1)
    return maxc.unsqueeze(1) - delta.unsqueeze(1) * weight


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(x: Tensor, factors: Tensor, order: Tensor, apply: Tensor, compact: bool | None = None) -> Tensor:
    """torchvision ``ColorJitter`` per image: image i (where ``apply[i]``) gets brightness, contrast,
    saturation and hue factors ``factors[i]`` (B, 4) applied in the order ``order[i]`` (B, 4), a
    permutation of 0..3 drawn per image as torchvision draws one per call. Each op runs once per
    position on the images that take it there (gathered: four ops on the batch, not sixteen; with
    ``compact=False`` all sixteen on every image, selected by ``where``; default: :func:`compacts`)."""
    compact = compacts(x) if compact is None else compact
    out = x.clone()
    for position in range(4):
        for op_index, op in enumerate(COLOR_OPS):
            selected = apply & (order[:, position] == op_index)
            if compact:
                idx = selected.nonzero().squeeze(1)
                if idx.numel():
                    out[idx] = op(out[idx], factors[idx, op_index])
            else:
                out = torch.where(_per_image(selected), op(out, factors[:, op_index]), out)
    return out


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with one sigma per image, reflect padding (torchvision ``gaussian_blur``:
    kernel ``exp(-t^2 / (2 sigma^2))`` on t = -(k-1)/2 .. (k-1)/2, normalized to sum 1)."""
    n, c, height, width = x.shape
    t = torch.linspace(-(kernel_size - 1) / 2, (kernel_size - 1) / 2, kernel_size, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n*c, k)
    pad = kernel_size // 2
    flat = x.reshape(1, n * c, height, width)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel.view(n * c, 1, 1, kernel_size),
                    groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernel.view(n * c, 1, kernel_size, 1),
                    groups=n * c)
    return flat.view(n, c, height, width)


def solarize(x: Tensor) -> Tensor:
    """torchvision ``solarize`` at threshold 0.5: ``1 - x`` where ``x >= 0.5``, else ``x``; that is
    ``min(x, 1 - x)`` on [0, 1]."""
    return torch.minimum(x, 1.0 - x)


def apply_where(x: Tensor, mask: Tensor, fn, compact: bool | None = None) -> Tensor:
    """``fn`` applied to the images selected by the boolean ``mask`` (B,), the others unchanged. ``fn``
    takes the images and the indices they have in ``x`` (for per-image parameters). Gathered when
    ``compact`` (default: :func:`compacts`), else computed on every image and selected by ``where``."""
    if not (compacts(x) if compact is None else compact):
        everything = torch.arange(x.shape[0], device=x.device)
        return torch.where(_per_image(mask), fn(x, everything).expand_as(x), x)
    idx = mask.nonzero().squeeze(1)
    if idx.numel():
        x = x.clone()
        x[idx] = fn(x[idx], idx).expand_as(x[idx])
    return x
