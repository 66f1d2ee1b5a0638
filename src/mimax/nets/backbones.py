"""Backbones: an MLP for vector data and torchvision's ResNet18/ResNet50 (METHODS.md §5)."""

from __future__ import annotations

from torch import nn


def mlp_backbone(in_dim: int, hidden_dim: int = 64) -> nn.Sequential:
    """``in_dim -> h -> h``, each layer Linear-BN-ReLU (METHODS.md §7's Gaussian-mixture encoder)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
    )


def resnet_backbone(architecture: str, image_size: int, in_channels: int = 3) -> tuple[nn.Module, int]:
    """torchvision's ResNet18/50 with ``fc`` removed; the CIFAR stem for images of 64 px or less.

    CIFAR stem (as in SimCLR's CIFAR experiments and solo-learn): ``conv1`` becomes 3x3, stride 1,
    padding 1, and the max-pool is dropped, so 32 px inputs are not downsampled 4x before ``layer1``.
    """
    import torchvision  # imported here: it costs seconds at start-up and vector-data runs never need it

    ctor = {"ResNet18": torchvision.models.resnet18, "ResNet50": torchvision.models.resnet50}[architecture]
    net = ctor(weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if image_size <= 64:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net, feature_dim


def build_backbone(architecture: str, input_shape: tuple[int, ...], mlp_hidden_dim: int = 64) -> tuple[nn.Module, int]:
    """Return ``(backbone, feature_dim)`` for inputs of ``input_shape`` (without the batch dimension)."""
    if architecture == "MLP":
        if len(input_shape) != 1:
            raise ValueError(f"the MLP backbone takes vectors, got input shape {input_shape}")
        return mlp_backbone(input_shape[0], mlp_hidden_dim), mlp_hidden_dim
    if architecture in ("ResNet18", "ResNet50"):
        if len(input_shape) != 3:
            raise ValueError(f"{architecture} takes images (C, H, W), got input shape {input_shape}")
        return resnet_backbone(architecture, max(input_shape[1:]), input_shape[0])
    raise ValueError(f"unknown architecture {architecture!r}")
