"""``mimax export RUN_DIR --out backbone.pt``: one encoder's backbone as a plain ``state_dict``.

The file holds only tensors (``torch.load(..., weights_only=True)`` reads it). A ResNet backbone of
base width 64 loads with ``strict=True`` into ``torchvision.models.resnet18/50(weights=None)`` after
the documented stem change (docs/evaluation.md), which is what :func:`torchvision_resnet` applies:

- ``fc`` -> ``nn.Identity()`` (always: the backbone outputs 512 / 2048 features);
- images of 64 px or less (the CIFAR stem, :func:`mimax.nets.backbones.uses_cifar_stem`):
  ``conv1`` -> ``nn.Conv2d(C, 64, 3, 1, 1, bias=False)``,
  ``maxpool`` -> ``nn.Identity()``;
- larger images with C != 3 channels: ``conv1`` -> ``nn.Conv2d(C, 64, 7, 2, 3, bias=False)``.

An MLP backbone (vector data) is exported as the ``nn.Sequential`` state_dict of
:func:`mimax.nets.backbones.mlp_backbone`; a ResNet of another base width (``--resnet_width``) has no
torchvision counterpart and loads into the backbone mimax builds for the run's config. Export checks
which of these holds by loading the file into the target with ``strict=True`` and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mimax.data import build_data
from mimax.data.preprocess import eval_preprocessing
from mimax.errors import UserError
from mimax.evaluation.runs import Run, checkpoints_to_use, rebuild_method
from mimax.naming import ascii_name
from mimax.nets.backbones import mlp_backbone, uses_cifar_stem
from mimax.store.atomic import atomic_torch_save, atomic_write_text, check_output_file
from mimax.store.checkpoint import load_checkpoint


def encoder_aliases(keys) -> dict[str, str]:
    """``{ASCII name: encoder key}`` for the keys that are not ASCII (``f_theta`` -> ``f_θ``)."""
    return {ascii_name(k): k for k in keys if ascii_name(k) != k}


def sidecar_path(backbone: Path) -> Path:
    """``x.pt`` -> ``x.pt.json``: how the exported backbone was built and what input it expects."""
    return backbone.with_name(backbone.name + ".json")


def torchvision_resnet(architecture: str, input_shape: tuple[int, ...]) -> nn.Module:
    """``torchvision.models.resnet18/50(weights=None)`` with the stem change for ``input_shape`` (C, H, W)."""
    import torchvision  # imported here, as in mimax.nets.backbones: seconds of start-up

    net = {"ResNet18": torchvision.models.resnet18, "ResNet50": torchvision.models.resnet50}[architecture](weights=None)
    channels, size = input_shape[0], max(input_shape[1:])
    net.fc = nn.Identity()
    if uses_cifar_stem(size):
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def stem_recipe(architecture: str, input_shape: tuple[int, ...]) -> str:
    """The loading recipe for a torchvision ResNet, as Python the user can paste."""
    channels, size = input_shape[0], max(input_shape[1:])
    lines = [f"net = torchvision.models.{architecture.lower()}(weights=None)", "net.fc = nn.Identity()"]
    if uses_cifar_stem(size):
        lines += [f"net.conv1 = nn.Conv2d({channels}, 64, kernel_size=3, stride=1, padding=1, bias=False)",
                  "net.maxpool = nn.Identity()"]
    elif channels != 3:
        lines.append(f"net.conv1 = nn.Conv2d({channels}, 64, kernel_size=7, stride=2, padding=3, bias=False)")
    return "\n".join(lines + ["net.load_state_dict(torch.load(PATH, weights_only=True), strict=True)"])


def choose_encoder(encoders: dict[str, Any], row_labels: dict[str, str], wanted: str | None) -> str:
    """The encoder key for ``--encoder`` (its key, an ASCII alias f_theta/g_xi, or its table label)."""
    if wanted is None:
        return next(iter(encoders))
    aliases = encoder_aliases(encoders)
    for key in encoders:
        if wanted in (key, row_labels.get(key)) or aliases.get(wanted) == key:
            return key
    names = ", ".join(list(encoders) + list(aliases))
    raise UserError(f"--encoder: no encoder {wanted!r} in this run; expected one of {names}")


def export_backbone(run: Run, out: str, encoder: str | None = None, checkpoint: str | None = None,
                    overwrite: bool = False) -> dict[str, Any]:
    """Write the chosen encoder's backbone state_dict to ``out``; return what was exported and how it loads."""
    out_path = Path(out)
    if not out_path.parent.is_dir():  # the folder is made once everything is validated
        existing = next((p for p in (out_path.parent, *out_path.parent.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise UserError(f"--out: {existing} is a file, so the folder {out_path.parent} cannot be made")
        if out_path.is_symlink():
            raise UserError(f"--out: {out_path} exists and is not a regular file; refusing to replace it")
    else:
        out_path = check_output_file(out_path, overwrite)
    if sidecar_path(out_path).exists() and not overwrite:
        raise UserError(f"--out: {sidecar_path(out_path)} already exists; pass --overwrite to replace it")
    _, path = checkpoints_to_use(run, checkpoint)[0]  # the first seed unless --checkpoint says otherwise
    ckpt = load_checkpoint(path)
    cfg = run.cfg
    if "input_shape" in ckpt:
        input_shape = tuple(int(s) for s in ckpt["input_shape"])
    else:  # checkpoints written before the input shape was recorded: ask the dataset
        input_shape = tuple(build_data(cfg, torch.device("cpu"), int(ckpt["seed"])).input_shape)
    method = rebuild_method(cfg, ckpt, path, input_shape)
    key = choose_encoder(method.encoders(), method.row_labels(), encoder)
    backbone = method.encoders()[key].backbone
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    out_path.parent.mkdir(parents=True, exist_ok=True)  # everything is validated: make the folder now
    atomic_torch_save(state, out_path)
    info = {"checkpoint": str(path), "encoder": key, "architecture": cfg.architecture,
            "input_shape": list(input_shape), "out": str(out_path), "dataset": cfg.dataset,
            "resnet_width": cfg.resnet_width, "mlp_hidden_dim": cfg.mlp_hidden_dim,
            "channels_last": cfg.channels_last}
    if cfg.architecture != "MLP":
        info["preprocessing"] = eval_preprocessing(cfg.dataset, input_shape).to_dict()
    # the file itself is a plain state_dict (it loads with strict=True); what rebuilds and feeds it is beside it
    atomic_write_text(sidecar_path(out_path), json.dumps({k: v for k, v in info.items() if k != "out"}, indent=2))
    if cfg.architecture == "MLP":
        mlp_backbone(input_shape[0], cfg.mlp_hidden_dim).load_state_dict(state, strict=True)
        info["loads_into"] = (f"the MLP backbone (not a torchvision model): "
                              f"mimax.nets.backbones.mlp_backbone({input_shape[0]}, {cfg.mlp_hidden_dim})")
        return info
    try:
        torchvision_resnet(cfg.architecture, input_shape).load_state_dict(state, strict=True)
        info["loads_into"] = f"torchvision.models.{cfg.architecture.lower()} with strict=True:\n" + \
            stem_recipe(cfg.architecture, input_shape)
    except RuntimeError:  # another base width: only mimax's own builder has this shape
        width = getattr(cfg, "resnet_width", None)
        info["loads_into"] = (f"mimax's {cfg.architecture} backbone of this run's config (--resnet_width {width}), "
                              f"not torchvision's {cfg.architecture.lower()}, whose base width is 64")
    return info
