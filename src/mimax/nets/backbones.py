"""Backbones (docs/methods.md §5): an MLP for vector data, mimax's width-scalable ResNet18/ResNet50, any
torchvision classification model by name, and any timm model as ``timm:<name>`` (optional extra).

Every backbone is described by a :class:`BackboneSpec`: the library's builder, its keyword arguments,
and the modules swapped after building (the classifier head becomes ``nn.Identity``; the CIFAR stem;
another number of input channels). The spec is the single recipe used to train, to export
(``mimax export`` writes it to the JSON sidecar as Python that needs no mimax code) and to check that
an export loads with ``strict=True``. The backbone width is read from the model (the classifier's input).

Rules, in one place:

- **CIFAR stem** (torchvision ResNets, incl. ResNeXt and wide ResNets; images of at most
  :data:`SMALL_IMAGE` px): ``conv1`` becomes 3x3, stride 1, padding 1 and the max-pool is dropped, so 32 px
  inputs are not downsampled 4x before ``layer1`` (SimCLR's CIFAR experiments; solo-learn).
- **Input channels**: grayscale inputs replace the first 3-channel convolution by a ``C``-channel one
  with the same shape otherwise (timm models take ``in_chans``).
- **ViTs**: torchvision's ``vit_*`` get ``image_size`` (the patch size is in the name); timm models that
  take an image size get ``img_size`` and, for images of at most :data:`SMALL_IMAGE` px, a patch size of
  about a side/8 that divides the side (4 px at 32 px, 8 x 8 tokens), as ViTs trained on CIFAR use
  (e.g. Lee et al., 2021, "Vision Transformer for Small-Size Datasets", arXiv:2112.13492).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any

from torch import nn

CIFAR_STEM_MAX_SIZE = SMALL_IMAGE = 64  # sides up to this: the CIFAR stem (ResNets), small patches (timm ViTs)
MIMAX_ARCHITECTURES = ("MLP", "ResNet18", "ResNet50")
WIDTH_SCALED = ("ResNet18", "ResNet50")  # the architectures --resnet_width scales (mimax's ResNets)


class ArchitectureError(ValueError):
    """An ``--architecture`` that cannot be built for the given inputs (one-line message)."""


# --- specs: how a backbone is built, as data -------------------------------------------------------
@dataclass(frozen=True)
class ModuleSwap:
    """Replace the submodule at ``path`` (dotted) with ``nn.Identity()`` or ``nn.Conv2d(**args)``."""

    path: str
    kind: str  # "Identity" or "Conv2d"
    args: dict[str, Any] = field(default_factory=dict)

    def module(self) -> nn.Module:
        return nn.Identity() if self.kind == "Identity" else nn.Conv2d(**self.args)

    def apply(self, net: nn.Module) -> None:
        parent, _, name = self.path.rpartition(".")
        setattr(net.get_submodule(parent), name, self.module())

    def code(self, var: str = "net") -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        parent, _, name = self.path.rpartition(".")
        return f"setattr({var}.get_submodule({parent!r}), {name!r}, nn.{self.kind}({args}))"

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.path, "replace_with": self.kind, "args": dict(self.args)}


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone as ``library``'s ``model`` built with ``kwargs``, then ``swaps`` applied."""

    architecture: str  # the --architecture value
    library: str  # "torchvision", "timm" or "mimax" (no counterpart elsewhere: MLP, ResNet width != 64)
    model: str  # torchvision builder / timm model name / mimax architecture
    kwargs: dict[str, Any]
    swaps: tuple[ModuleSwap, ...]
    feature_dim: int
    stem: str  # "cifar", "imagenet", "patch<p>" or "none": the input-side rule that was applied

    def build(self, library: str | None = None) -> nn.Module:
        """The bare backbone built in ``library`` (default: the spec's own), exactly as :meth:`builder_code`
        writes it: the library's builder, then the swaps."""
        library = library or self.library
        if library == "torchvision":
            import torchvision

            net = torchvision.models.get_model(self.model, weights=None, **self.kwargs)
        elif library == "timm":
            kwargs = dict(self.kwargs) if self.library == "timm" else {"num_classes": 0}
            net = _timm().create_model(self.model, pretrained=False, **kwargs)
        else:
            raise ArchitectureError(f"{self.architecture} has no {library} counterpart")
        for swap in self.swaps:
            swap.apply(net)
        return net

    def builder_code(self, library: str | None = None) -> list[str]:
        """Python lines building the bare backbone in ``library`` (default: the spec's own)."""
        library = library or self.library
        kwargs = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        if library == "torchvision":
            head = [f"net = torchvision.models.get_model({self.model!r}, weights=None{kwargs})"]
        elif library == "timm":
            kw = dict(self.kwargs) if self.library == "timm" else {"num_classes": 0}
            kwargs = "".join(f", {k}={v!r}" for k, v in kw.items())
            head = [f"net = timm.create_model({self.model!r}, pretrained=False{kwargs})"]
        else:
            raise ArchitectureError(f"{self.architecture} has no {library} counterpart")
        return head + [s.code() for s in self.swaps]


def uses_cifar_stem(image_size: int) -> bool:
    """Whether a ResNet on ``image_size``-px images gets the CIFAR stem (the one rule, used by training
    and export alike)."""
    return image_size <= CIFAR_STEM_MAX_SIZE


def resnet_stem_swaps(in_channels: int, image_size: int, width: int = 64) -> tuple[ModuleSwap, ...]:
    """The ResNet stem rule: the CIFAR stem when :func:`uses_cifar_stem`, else torchvision's 7x7/2 stem
    (rebuilt only when ``in_channels != 3``)."""
    if uses_cifar_stem(image_size):
        conv = dict(in_channels=in_channels, out_channels=width, kernel_size=3, stride=1, padding=1, bias=False)
        return ModuleSwap("conv1", "Conv2d", conv), ModuleSwap("maxpool", "Identity")
    if in_channels != 3:
        conv = dict(in_channels=in_channels, out_channels=width, kernel_size=7, stride=2, padding=3, bias=False)
        return (ModuleSwap("conv1", "Conv2d", conv),)
    return ()


def small_image_patch(side: int) -> int:
    """A ViT patch size for a ``side``-px image: the divisor of ``side`` closest to ``side / 8`` (about
    8 x 8 tokens; the larger one on a tie)."""
    divisors = [d for d in range(1, side + 1) if side % d == 0]
    return min(divisors, key=lambda d: (abs(d - side / 8), -d))


# --- mimax's own backbones -------------------------------------------------------------------------
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


def resnet_backbone(architecture: str, image_size: int, in_channels: int = 3, width: int = 64) -> tuple[nn.Module, int]:
    """torchvision's ResNet18/50 with ``fc`` removed, base width ``width`` and ``in_channels`` inputs;
    the stem of :func:`resnet_stem_swaps` (the CIFAR stem for images of 64 px or less). The stem
    convolution is always rebuilt with torchvision's initialization (Kaiming normal, fan_out)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if width < 1:
        raise ValueError(f"resnet width must be >= 1, got {width}")
    block, layers = {"ResNet18": (BasicBlock, [2, 2, 2, 2]), "ResNet50": (Bottleneck, [3, 4, 6, 3])}[architecture]
    net = _width_resnet_class()(block, layers, width)
    feature_dim = 8 * width * block.expansion  # torchvision's fc input is 512 x expansion at width 64
    net.fc = nn.Identity()
    swaps = resnet_stem_swaps(in_channels, image_size, width)
    if not any(s.path == "conv1" for s in swaps):
        swaps += (ModuleSwap("conv1", "Conv2d", dict(in_channels=in_channels, out_channels=width, kernel_size=7,
                                                     stride=2, padding=3, bias=False)),)
    for swap in swaps:
        swap.apply(net)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.bn1 = nn.BatchNorm2d(width)
    return net, feature_dim


# --- torchvision and timm models by name ----------------------------------------------------------
@functools.cache
def torchvision_models() -> frozenset[str]:
    """torchvision's classification models (``torchvision.models.list_models(module=torchvision.models)``)."""
    import torchvision

    return frozenset(torchvision.models.list_models(module=torchvision.models))


def _timm():
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise ArchitectureError("timm models need the timm package: pip install 'mimax[timm]'") from None


def parse_architecture(architecture: str) -> tuple[str, str]:
    """``(library, model)`` of an ``--architecture`` value: ``MLP``/``ResNet18``/``ResNet50`` (mimax),
    a torchvision classification model (``resnet34``, ``convnext_tiny``, ``vit_b_16``; also as
    ``torchvision:<name>``), or ``timm:<name>``. Raises :class:`ArchitectureError` for unknown names."""
    if architecture in MIMAX_ARCHITECTURES:
        return "mimax", architecture
    library, sep, model = architecture.partition(":")
    if not sep:
        library, model = "torchvision", architecture
    if library == "timm":
        if not _timm().is_model(model):
            raise ArchitectureError(f"timm has no model {model!r} (see timm.list_models())")
        return "timm", model
    if library == "torchvision":
        if model not in torchvision_models():
            raise ArchitectureError(
                f"unknown architecture {architecture!r}; expected MLP, ResNet18, ResNet50, a torchvision "
                "classification model (e.g. resnet34, convnext_tiny, vit_b_16) or timm:<model>")
        return "torchvision", model
    raise ArchitectureError(f"unknown library {library!r} in {architecture!r}; expected torchvision:<model> "
                            "or timm:<model>")


def _last_classifier(net: nn.Module) -> tuple[str, int]:
    """The classifier layer (path, input width): the model's last ``nn.Linear``, or for models whose
    classifier is a 1x1 convolution (SqueezeNet) the last such convolution."""
    linear = [(n, m.in_features) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if linear:
        return linear[-1]
    conv = [(n, m.in_channels) for n, m in net.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and "classifier" in n]
    if conv:
        return conv[-1]
    raise ArchitectureError(f"{type(net).__name__} has no linear classifier to remove")


def _conv_args(conv: nn.Conv2d, **changes: Any) -> dict[str, Any]:
    args = dict(in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=conv.kernel_size,
                stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                bias=conv.bias is not None)
    return {**args, **changes}


def torchvision_spec(model: str, input_shape: tuple[int, ...], architecture: str) -> tuple[nn.Module, BackboneSpec]:
    """Build torchvision's ``model`` (no weights) for ``input_shape`` (C, H, W) with its head removed."""
    import torchvision

    channels, side = input_shape[0], max(input_shape[1:])
    kwargs: dict[str, Any] = {}
    if model.startswith("vit_"):
        kwargs["image_size"] = side
    elif model.startswith("maxvit"):
        kwargs["input_size"] = [side, side]
    elif model in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    try:
        net = torchvision.models.get_model(model, weights=None, **kwargs)
    except NotImplementedError:  # a RuntimeError: e.g. RegNet's init on the meta device; checked when built
        raise
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ArchitectureError(f"{model} cannot be built for {side}-px inputs ({_first_line(exc)})") from None
    swaps: list[ModuleSwap] = []
    stem = "none"
    if isinstance(net, torchvision.models.ResNet):
        swaps += resnet_stem_swaps(channels, side, net.conv1.out_channels)
        stem = "cifar" if side <= SMALL_IMAGE else "imagenet"
    elif channels != 3:
        first = next(((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3), None)
        if first is None:
            raise ArchitectureError(f"{model}: no 3-channel input convolution to adapt to {channels} channels")
        swaps.append(ModuleSwap(first[0], "Conv2d", _conv_args(first[1], in_channels=channels)))
    head, feature_dim = _last_classifier(net)
    swaps.append(ModuleSwap(head, "Identity"))
    for swap in swaps:
        swap.apply(net)
    if stem == "cifar" or (stem == "imagenet" and channels != 3):
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    spec = BackboneSpec(architecture, "torchvision", model, kwargs, tuple(swaps), feature_dim, stem)
    return net, spec


def timm_spec(model: str, input_shape: tuple[int, ...], architecture: str) -> tuple[nn.Module, BackboneSpec]:
    """timm's ``model`` (no pretrained weights, ``num_classes=0``, ``in_chans=C``); models that take an
    image size get ``img_size`` and, for small images, a small patch (:func:`small_image_patch`)."""
    timm = _timm()
    channels, side = input_shape[0], max(input_shape[1:])
    base: dict[str, Any] = {"num_classes": 0, "in_chans": channels}
    sized = {**base, "img_size": side, **({"patch_size": small_image_patch(side)} if side <= SMALL_IMAGE else {})}
    try:
        net, kwargs = timm.create_model(model, pretrained=False, **sized), sized
    except TypeError as exc:
        if "img_size" not in str(exc) and "patch_size" not in str(exc):
            raise ArchitectureError(f"{model} cannot be built ({_first_line(exc)})") from None
        net, kwargs = timm.create_model(model, pretrained=False, **base), base  # a CNN: no image size
    except NotImplementedError:  # a RuntimeError (data-dependent init on the meta device): checked when built
        raise
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise ArchitectureError(f"{model} cannot be built for {side}-px inputs ({_first_line(exc)})") from None
    feature_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
    stem = f"patch{kwargs['patch_size']}" if "patch_size" in kwargs else "none"
    return net, BackboneSpec(architecture, "timm", model, kwargs, (), feature_dim, stem)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def build_backbone_spec(architecture: str, input_shape: tuple[int, ...], mlp_hidden_dim: int = 64,
                        resnet_width: int = 64) -> tuple[nn.Module, BackboneSpec]:
    """The backbone for inputs of ``input_shape`` (without the batch dimension) and its spec."""
    library, model = parse_architecture(architecture)
    if library == "mimax" and model == "MLP":
        if len(input_shape) != 1:
            raise ArchitectureError(f"the MLP backbone takes vectors, got input shape {input_shape}")
        spec = BackboneSpec(architecture, "mimax", model, {"in_dim": input_shape[0], "hidden_dim": mlp_hidden_dim},
                            (), mlp_hidden_dim, "none")
        return mlp_backbone(input_shape[0], mlp_hidden_dim), spec
    if len(input_shape) != 3:
        raise ArchitectureError(f"{architecture} takes images (C, H, W), got input shape {input_shape}")
    channels, side = input_shape[0], max(input_shape[1:])
    if library == "mimax":
        net, dim = resnet_backbone(model, side, channels, resnet_width)
        if resnet_width == 64:  # exactly torchvision's resnet18/50 after the stem rule
            swaps = resnet_stem_swaps(channels, side) + (ModuleSwap("fc", "Identity"),)
            spec = BackboneSpec(architecture, "torchvision", model.lower(), {}, swaps, dim,
                                "cifar" if side <= SMALL_IMAGE else "imagenet")
        else:
            spec = BackboneSpec(architecture, "mimax", model, {"resnet_width": resnet_width}, (), dim,
                                "cifar" if side <= SMALL_IMAGE else "imagenet")
        return net, spec
    if library == "torchvision":
        return torchvision_spec(model, input_shape, architecture)
    return timm_spec(model, input_shape, architecture)


def build_backbone(architecture: str, input_shape: tuple[int, ...], mlp_hidden_dim: int = 64,
                   resnet_width: int = 64) -> tuple[nn.Module, int]:
    """Return ``(backbone, feature_dim)`` for inputs of ``input_shape`` (without the batch dimension)."""
    net, spec = build_backbone_spec(architecture, input_shape, mlp_hidden_dim, resnet_width)
    return net, spec.feature_dim


def check_backbone(architecture: str, input_shape: tuple[int, ...], mlp_hidden_dim: int = 64,
                   resnet_width: int = 64) -> None:
    """Build the backbone on the meta device (no memory, no compute) and run it on a meta batch, so that
    an architecture that cannot take ``input_shape`` fails before any work. Raises ArchitectureError."""
    import torch

    try:
        with torch.device("meta"):
            net, dim = build_backbone(architecture, input_shape, mlp_hidden_dim, resnet_width)
            out = net.eval()(torch.zeros(2, *input_shape))
    except ArchitectureError:
        raise
    except NotImplementedError:  # a builder that initializes with data-dependent ops: checked when built
        return
    except Exception as exc:  # noqa: BLE001 - any failure of the forward is a shape mismatch to report
        raise ArchitectureError(f"{architecture} cannot take inputs of shape {tuple(input_shape)} "
                                f"({_first_line(exc)})") from None
    if tuple(out.shape) != (2, dim):
        raise ArchitectureError(f"{architecture} outputs {tuple(out.shape[1:])} features per input, "
                                f"expected ({dim},) after removing its classifier")


def convolutions_of_a_single_pixel(architecture: str, input_shape: tuple[int, ...], mlp_hidden_dim: int = 64,
                                   resnet_width: int = 64) -> list[str]:
    """The strided convolutions with a kernel larger than 1x1 that receive a 1x1 feature map on ``input_shape`` (an
    ImageNet stem on 8-px images reaches 1x1 before its last stages), found by a forward pass on the meta device.
    Every tap but the centre reads padding there, and torch's CPU bf16 kernels give such weights wrong gradients
    (nonzero, NaN or inf where the exact value is 0, different from call to call: 3x3 stride 2 on 1x1 maps, 6 of
    6 calls wrong; stride 1, 0 of 6; measured on torch 2.14, AVX512-BF16)."""
    import torch

    if len(input_shape) != 3:
        return []
    found: list[str] = []
    try:
        with torch.device("meta"):
            net, _ = build_backbone(architecture, input_shape, mlp_hidden_dim, resnet_width)
            hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: found.append(name)
                                                 if tuple(args[0].shape[-2:]) == (1, 1) else None)
                     for name, m in net.named_modules()
                     if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1 and max(m.stride) > 1]
            net.eval()(torch.zeros(2, *input_shape))
            for h in hooks:
                h.remove()
    except Exception:  # noqa: BLE001 - not buildable here: check_backbone reports it; nothing to add
        return []
    return found
