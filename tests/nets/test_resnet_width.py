"""``--resnet_width``: torchvision's ResNet definitions with scaled stage widths."""

from __future__ import annotations

import pytest
import torch
import torchvision

from mimax.nets.backbones import build_backbone


@pytest.mark.parametrize("arch, ctor", [("ResNet18", torchvision.models.resnet18),
                                        ("ResNet50", torchvision.models.resnet50)])
def test_width_64_is_torchvisions_resnet(arch, ctor):
    net, dim = build_backbone(arch, (3, 224, 224))
    ref = {k: v.shape for k, v in ctor().state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in net.state_dict().items()} == ref
    assert dim == ctor().fc.in_features


def test_width_16_cifar_resnet18_and_grayscale_inputs():
    net, dim = build_backbone("ResNet18", (3, 32, 32), resnet_width=16)
    assert sum(p.numel() for p in net.parameters()) == 700_176  # PERFORMANCE.md: 0.70 M parameters
    assert dim == 128 and net(torch.randn(2, 3, 32, 32)).shape == (2, 128)
    gray, dim = build_backbone("ResNet50", (1, 28, 28), resnet_width=8)
    assert gray.conv1.in_channels == 1 and dim == 8 * 8 * 4
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, dim)
    assert [m.out_channels for m in (gray.layer1[0].conv3, gray.layer4[0].conv3)] == [32, 256]
