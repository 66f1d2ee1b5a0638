"""``--architecture``: torchvision classification models by name and timm models as ``timm:<name>``.

One training step per family (torchvision ResNet with the CIFAR stem, ConvNeXt, torchvision ViT,
MobileNet with a grayscale stem, SqueezeNet's convolutional classifier, timm ViT with a small patch, timm
CNN) on tiny inputs, through the methods of both paradigms: the objectives never see the backbone.
The heaviest models (ConvNeXt-T, ViT-B/16, ResNet-101) are ``slow``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import run_main
from mimax.cli import main
from mimax.config import ConfigError, resolve
from mimax.engine.optim import build_optimizer
from mimax.methods import METHODS, build_method
from mimax.nets.backbones import ArchitectureError, build_backbone, parse_architecture, small_image_patch

timm = pytest.importorskip("timm")

# (architecture, input shape (C, H, W), backbone width the model must report, method)
FAMILIES = [
    ("resnet34", (3, 32, 32), 512, "SimCLR"),  # torchvision ResNet, CIFAR stem
    ("resnet18", (3, 72, 72), 512, "BYOL"),  # torchvision ResNet, ImageNet stem (above 64 px)
    ("mobilenet_v3_small", (1, 28, 28), 1024, "SimSiam"),  # grayscale: first convolution rebuilt
    ("squeezenet1_1", (3, 32, 32), 512, "VICReg"),  # a 1x1-convolution classifier
    ("timm:vit_tiny_patch16_224", (3, 32, 32), 192, "MoCoV3"),  # MoCo-v3's backbone family, patch 4
    ("timm:vit_small_patch16_224", (1, 28, 28), 384, "SDMI"),  # ViT-S, grayscale, patch 4 (28 = 7 x 4)
    ("timm:resnet10t", (3, 32, 32), 512, "BarlowTwins"),  # a timm CNN: no image size, no patch
    pytest.param("convnext_tiny", (3, 32, 32), 768, "JMI", marks=pytest.mark.slow),
    pytest.param("vit_b_16", (3, 32, 32), 768, "SimCLR", marks=pytest.mark.slow),
    pytest.param("resnet101", (3, 32, 32), 2048, "BYOL", marks=pytest.mark.slow),
]


def image_config(arch: str, shape: tuple[int, int, int], method: str):
    dataset = "CIFAR10" if shape[0] == 3 else "FashionMNIST"
    given = dict(model_name=method, dataset="Digits", architecture=arch, image_size=shape[1], feature_dim=32,
                 projection_dim=16, projection_layer=2, batch_size=4)
    if METHODS[method].paradigm == "self-distillation" and method != "SDMI":
        given["predictor_dim"] = 16
    cfg = resolve(given)
    cfg.dataset = dataset  # only the channel count of the inputs matters here
    return cfg


@pytest.mark.parametrize("arch,shape,width,method", FAMILIES)
def test_one_training_step_per_family(arch, shape, width, method):
    torch.manual_seed(0)
    cfg = image_config(arch, shape, method)
    model = build_method(cfg, shape)
    encoder = next(iter(model.encoders().values()))
    assert encoder.projector[0].in_features == width  # the projector reads the width from the model
    x = torch.rand(4, *shape)
    with torch.no_grad():
        assert encoder.features(x).shape == (4, width)
    before = [p.detach().clone() for p in encoder.backbone.parameters()]
    name = model.active_optimizer(0)
    opt = build_optimizer("sgd", model.optimizer_groups()[name], 0.5, 1e-4, 0.9, 0.02)
    loss = model(x, x.flip(3), 0)["loss"]
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    model.after_step(0, 10)
    moved = sum(not torch.equal(b, p) for b, p in zip(before, encoder.backbone.parameters()))
    assert moved > 0.9 * len(before), f"{moved}/{len(before)} backbone tensors moved"


def test_stem_and_patch_rules():
    net, _ = build_backbone("resnet34", (3, 32, 32))
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and isinstance(net.maxpool, nn.Identity)
    net, _ = build_backbone("resnet34", (1, 96, 96))
    assert net.conv1.kernel_size == (7, 7) and net.conv1.in_channels == 1 and isinstance(net.maxpool, nn.MaxPool2d)
    assert isinstance(net.fc, nn.Identity)
    net, dim = build_backbone("timm:vit_tiny_patch16_224", (3, 32, 32))
    assert net.patch_embed.proj.kernel_size == (4, 4) and net.pos_embed.shape[1] == 1 + 8 * 8
    net, _ = build_backbone("timm:vit_tiny_patch16_224", (3, 96, 96))  # not small: the model's own patch
    assert net.patch_embed.proj.kernel_size == (16, 16)
    assert [small_image_patch(s) for s in (8, 16, 28, 32, 64)] == [1, 2, 4, 4, 8]
    net, dim = build_backbone("vit_b_16", (3, 32, 32))
    assert dim == 768 and net.image_size == 32


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "lars"])
def test_vit_position_embedding_and_class_token_skip_weight_decay(optimizer):
    """One step on zero gradients: weight decay alone moves a parameter. A ViT's position embedding and class
    token (timm's and torchvision's) stay put under every optimizer, while its weight matrices decay. They were
    kept out of LARS's decay only, and decayed by 1 - lr*wd per step under SGD, Adam and AdamW."""
    from torchvision.models import VisionTransformer

    from mimax.engine.optim import build_optimizer
    from mimax.paradigms.base import param_groups

    timm_vit, _ = build_backbone("timm:vit_tiny_patch16_224", (3, 32, 32))
    tv_vit = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    for net, tokens, weight in ((timm_vit, ("pos_embed", "cls_token"), "patch_embed.proj.weight"),
                                (tv_vit, ("encoder.pos_embedding", "class_token"), "conv_proj.weight")):
        params = dict(net.named_parameters())
        with torch.no_grad():
            for p in params.values():
                p.normal_()
        before = {n: p.detach().clone() for n, p in params.items()}
        opt = build_optimizer(optimizer, param_groups(net), lr=0.1, weight_decay=0.05, momentum=0.9)
        for p in params.values():
            p.grad = torch.zeros_like(p)
        opt.step()
        for name in tokens:
            assert torch.equal(params[name], before[name]), (optimizer, name)
        assert not torch.equal(params[weight], before[weight]), (optimizer, weight)  # weights do decay


@pytest.mark.parametrize("name,fragment", [
    ("resnet_nope", "unknown architecture 'resnet_nope'"),
    ("timm:no_such_model", "timm has no model 'no_such_model'"),
    ("keras:resnet50", "unknown library 'keras'"),
])
def test_unknown_architectures_are_refused(name, fragment):
    with pytest.raises(ArchitectureError, match=fragment):
        parse_architecture(name)
    with pytest.raises(ConfigError, match="--architecture"):
        resolve(dict(dataset="Digits", architecture=name))


def test_bad_architecture_flags_are_one_line_errors_before_any_output(tmp_path, capsys):
    out = tmp_path / "run"
    for k, (args, fragment) in enumerate((
        (["--architecture", "vit_b_16", "--image_size", "28"], "vit_b_16 cannot take inputs of shape (1, 28, 28)"),
        (["--architecture", "resnet_nope"], "--architecture: unknown architecture"),
        (["--architecture", "resnet34", "--resnet_width", "16"], "--resnet_width: scales mimax's ResNet18/ResNet50"),
        (["--architecture", "MLP"], "holds images"),
    )):
        argv = ["--dataset", "Digits", "--epochs", "1", "--warmup_epochs", "0", "--output_dir", str(out), *args]
        if k == 0:  # once as a user runs it
            proc = run_main(argv)
            code, err = proc.returncode, proc.stderr
        else:
            code, err = main(["train", *argv]), capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mimax: error: ") and fragment in lines[0], err
        assert not out.exists()


def test_a_model_whose_init_needs_data_is_accepted_and_built():
    """RegNet's initializer raises NotImplementedError on the meta device (where the input size is checked): it
    was caught as a RuntimeError and all 15 RegNets were refused as "cannot be built for 72-px inputs"."""
    cfg = resolve(dict(dataset="Digits", architecture="regnet_x_400mf", image_size=72))
    net, dim = build_backbone(cfg.architecture, (1, 72, 72))
    assert dim == 400 and net(torch.randn(2, 1, 72, 72)).shape == (2, 400)


@pytest.mark.parametrize("architecture", ["resnet34", "mobilenet_v3_small", "timm:resnet10t"])
def test_a_dataset_preset_width_does_not_refuse_other_architectures(architecture):
    """FashionMNIST's preset trains a width-16 ResNet18; any other backbone keeps its own width. The preset's
    width was checked as if the user had given --resnet_width, refusing every other architecture on the dataset
    the docs use for CPU runs. A width the user gives to another architecture is still refused."""
    cfg = resolve(dict(dataset="FashionMNIST", model_name="SimCLR", architecture=architecture))
    assert cfg.resnet_width == 64 and cfg.architecture == architecture
    assert resolve(dict(dataset="FashionMNIST", model_name="SimCLR")).resnet_width == 16  # the preset's own ResNet18
    with pytest.raises(ConfigError, match="--resnet_width: scales mimax's ResNet18/ResNet50 only"):
        resolve(dict(dataset="FashionMNIST", model_name="SimCLR", architecture=architecture, resnet_width=16))
