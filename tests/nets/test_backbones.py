"""ResNet18/50 backbones from torchvision: feature dims and forward shapes at 32, 64 and 224 px."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mimax.nets import build_backbone


@pytest.mark.parametrize("arch,dim", [("ResNet18", 512), ("ResNet50", 2048)])
@pytest.mark.parametrize("size", [32, 64, 224])
def test_resnet_forward_shapes(arch, dim, size):
    torch.manual_seed(0)
    net, feature_dim = build_backbone(arch, (3, size, size))
    assert feature_dim == dim
    cifar_stem = size <= 64
    assert net.conv1.kernel_size == ((3, 3) if cifar_stem else (7, 7))
    assert net.conv1.stride == ((1, 1) if cifar_stem else (2, 2))
    assert isinstance(net.maxpool, nn.Identity) == cifar_stem
    assert isinstance(net.fc, nn.Identity)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, dim) and torch.isfinite(out).all()


def test_grayscale_inputs_get_a_one_channel_stem():
    net, dim = build_backbone("ResNet18", (1, 28, 28))
    assert net.conv1.in_channels == 1
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 28, 28)).shape == (2, dim)
