"""Backbones: an MLP for vector data and torchvision's ResNet18/ResNet50 (docs/methods.md §5)."""

from __future__ import annotations

import functools

from torch import nn


def mlp_backbone(in_dim: int, hidden_dim: int = 64) -> nn.Sequential:
    """``in_dim -> h -> h``, each layer Linear-BN-ReLU (docs/methods.md §7's Gaussian-mixture encoder)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
    )


@functools.cache
def _width_resnet_class() -> type:
    """The class below, defined on first use: torchvision costs seconds at start-up and vector-data runs
    never need it."""
    from torchvision.models.resnet import ResNet

    class WidthResNet(ResNet):
        """torchvision's ``ResNet`` (its ``BasicBlock``/``Bottleneck``, ``_make_layer`` and initialization)
        with the stage widths scaled from (64, 128, 256, 512) to ``width`` x (1, 2, 4, 8).

        torchvision hard-codes the stage widths in ``ResNet.__init__``; the only change here is that
        ``_make_layer`` receives ``planes * width / 64`` and that the first stage starts from ``width``
        input channels (the stem is rebuilt by :func:`resnet_backbone`). With ``width = 64`` the modules
        and parameter shapes are exactly torchvision's ``resnet18``/``resnet50``."""

        def __init__(self, block, layers: list[int], width: int):
            self._width = width
            self._first_stage = True
            super().__init__(block, layers)

        def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
            if self._first_stage:
                self.inplanes, self._first_stage = self._width, False
            return super()._make_layer(block, planes * self._width // 64, blocks, stride, dilate)

    return WidthResNet


CIFAR_STEM_MAX_SIZE = 64  # images of at most this many pixels per side get the CIFAR stem


def uses_cifar_stem(image_size: int) -> bool:
    """The CIFAR stem rule shared by the backbone and ``mimax export``: 3x3 stride-1 ``conv1`` and no
    max-pool for images of at most 64 px (SimCLR's CIFAR experiments, solo-learn)."""
    return image_size <= CIFAR_STEM_MAX_SIZE


def resnet_backbone(architecture: str, image_size: int, in_channels: int = 3, width: int = 64) -> tuple[nn.Module, int]:
    """torchvision's ResNet18/50 with ``fc`` removed, base width ``width`` and ``in_channels`` inputs;
    the CIFAR stem for images of 64 px or less.

    CIFAR stem (as in SimCLR's CIFAR experiments and solo-learn): ``conv1`` becomes 3x3, stride 1,
    padding 1, and the max-pool is dropped, so 32 px inputs are not downsampled 4x before ``layer1``.
    The rebuilt ``conv1`` gets torchvision's initialization (Kaiming normal, fan_out).
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if width < 1:
        raise ValueError(f"resnet width must be >= 1, got {width}")
    block, layers = {"ResNet18": (BasicBlock, [2, 2, 2, 2]), "ResNet50": (Bottleneck, [3, 4, 6, 3])}[architecture]
    net = _width_resnet_class()(block, layers, width)
    feature_dim = 8 * width * block.expansion  # torchvision's fc input is 512 x expansion at width 64
    net.fc = nn.Identity()
    if uses_cifar_stem(image_size):
        net.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.bn1 = nn.BatchNorm2d(width)
    return net, feature_dim


def build_backbone(architecture: str, input_shape: tuple[int, ...], mlp_hidden_dim: int = 64,
                   resnet_width: int = 64) -> tuple[nn.Module, int]:
    """Return ``(backbone, feature_dim)`` for inputs of ``input_shape`` (without the batch dimension)."""
    if architecture == "MLP":
        if len(input_shape) != 1:
            raise ValueError(f"the MLP backbone takes vectors, got input shape {input_shape}")
        return mlp_backbone(input_shape[0], mlp_hidden_dim), mlp_hidden_dim
    if architecture in ("ResNet18", "ResNet50"):
        if len(input_shape) != 3:
            raise ValueError(f"{architecture} takes images (C, H, W), got input shape {input_shape}")
        return resnet_backbone(architecture, max(input_shape[1:]), input_shape[0], resnet_width)
    raise ValueError(f"unknown architecture {architecture!r}")
