"""``mimax export RUN_DIR --out FILE [--format torchvision|timm|safetensors]``: one encoder's backbone as
a file that loads without mimax, plus a JSON sidecar ``FILE.json`` saying how.

The backbone's :class:`~mimax.nets.backbones.BackboneSpec` is the recipe: the library's builder and its
keyword arguments, then the module swaps (classifier -> ``nn.Identity``; the CIFAR stem; the input
channels). The sidecar records it as data (architecture, stem, input size, normalization, swaps) and as
Python (``load``) that builds the model with torchvision or timm only and calls
``load_state_dict(..., strict=True)``. Before the file is kept, export builds that model the same way
(:meth:`~mimax.nets.backbones.BackboneSpec.build`) and loads the file into it with ``strict=True``.

Formats:

- ``torchvision`` / ``timm``: a ``torch.save`` state_dict of tensors only (``weights_only=True`` reads
  it) with the parameter names of that library's model. torchvision's ResNets also load into timm's
  ResNets of the same name (same names and shapes); timm models only into timm.
- ``safetensors``: the same tensors in the safetensors format (``safetensors.torch.load_file``), named
  for the backbone's own library.
- default: the backbone's own library; an MLP or a ResNet of another base width (``--resnet_width``)
  has no counterpart and is written as a state_dict of mimax's own backbone (the sidecar says so).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mimax import __version__
from mimax.data import build_data
from mimax.data.preprocess import eval_preprocessing
from mimax.data.views import normalization as dataset_normalization
from mimax.errors import UserError
from mimax.evaluation.runs import Run, checkpoints_to_use, rebuild_method
from mimax.naming import ascii_name
from mimax.nets.backbones import ArchitectureError, BackboneSpec, build_backbone_spec
from mimax.store.atomic import (
    atomic_write_text,
    check_output_file,
    parent_made_for,
    remove_torn_writes,
    staged_bytes,
)
from mimax.store.checkpoint import load_checkpoint

FORMATS = ("torchvision", "timm", "safetensors")


def encoder_aliases(keys) -> dict[str, str]:
    """``{ASCII name: encoder key}`` for the keys that are not ASCII (``f_theta`` -> ``f_θ``)."""
    return {ascii_name(k): k for k in keys if ascii_name(k) != k}


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


def sidecar_path(backbone: Path) -> Path:
    """``x.pt`` -> ``x.pt.json``: how the exported backbone was built and what input it expects."""
    return backbone.with_name(backbone.name + ".json")


def load_code(spec: BackboneSpec, library: str, file_format: str, path: str = "PATH") -> str:
    """Python that builds ``library``'s model of ``spec`` and loads the exported file with ``strict=True``,
    without any mimax import."""
    imports = ["import torch", "from torch import nn"]
    if library == "torchvision":
        imports.append("import torchvision")
    elif library == "timm":
        imports.append("import timm")
    if library == "mimax":
        raise ArchitectureError(f"{spec.architecture} has no torchvision or timm counterpart")
    if file_format == "safetensors":
        imports.append("from safetensors.torch import load_file")
        state = f"load_file({path!r})"
    else:
        state = f"torch.load({path!r}, weights_only=True)"
    lines = imports + spec.builder_code(library) + [f"net.load_state_dict({state}, strict=True)"]
    return "\n".join(lines)


def _target_library(spec: BackboneSpec, fmt: str | None) -> tuple[str, str]:
    """``(library whose names the file uses, file format)`` for ``--format``."""
    if fmt is None:
        return spec.library, "pt"
    if fmt == "safetensors":
        return spec.library, "safetensors"
    if spec.library == "mimax":
        why = ("a ResNet of base width != 64 (--resnet_width)" if spec.model.startswith("ResNet")
               else "the MLP backbone of vector data")
        raise UserError(f"--format {fmt}: {spec.architecture} here is {why}, which no {fmt} model matches; "
                        "use --format safetensors or the default format")
    if fmt == "torchvision" and spec.library == "timm":
        raise UserError(f"--format torchvision: {spec.architecture} is a timm model; use --format timm or safetensors")
    return fmt, "pt"


def _serialize(state: dict[str, torch.Tensor], file_format: str, metadata: dict[str, str]) -> bytes:
    """The file's bytes, made in memory: they are checked (:func:`_loaded`) before anything is written, and
    written by the store's atomic writer, whose failure names the file and the system's reason (torch's zip
    writer, writing to a file, raised a RuntimeError without it)."""
    if file_format == "safetensors":
        return _safetensors("--format safetensors").save(state, metadata=metadata)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _safetensors(flag: str):
    """``safetensors.torch``, an optional dependency: its absence is one line naming ``flag`` and the extra."""
    try:
        import safetensors.torch
    except ImportError:
        raise UserError(f"{flag}: needs the safetensors package: pip install 'mimax[export]'") from None
    return safetensors.torch


def _loaded(data: bytes, file_format: str) -> dict[str, torch.Tensor]:
    """The tensors of an exported file's bytes (``pt``: ``torch.load(weights_only=True)``; ``safetensors``)."""
    if file_format == "safetensors":
        return _safetensors("--format safetensors").load(data)
    return torch.load(io.BytesIO(data), weights_only=True)


def file_identity(data: bytes) -> dict[str, Any]:
    """``{"sha256", "size"}`` of the backbone file's bytes, recorded in the sidecar: a backbone that is not
    the one its sidecar describes (an export killed between its two writes, a file replaced since) is
    refused by :func:`load_exported` instead of being used under another encoder's description."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def load_exported(file: Path, flag: str) -> tuple[nn.Module, dict[str, Any]]:
    """An exported backbone (``mimax export``) rebuilt from its ``.json`` sidecar (architecture, input shape,
    widths, format) with its tensors loaded ``strict=True``, in eval mode and in the memory layout the run
    trained in; and the sidecar. Every failure is one :class:`UserError` line naming ``flag``."""
    meta_path = sidecar_path(file)
    try:
        meta = json.loads(meta_path.read_text())
        architecture, shape = meta["architecture"], tuple(int(s) for s in meta["input_shape"])
    except FileNotFoundError:
        raise UserError(f"{flag}: {meta_path} not found (mimax export writes it beside the backbone)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{flag}: {meta_path} is not an export description ({exc})") from None
    again = "export it again with --overwrite"
    try:
        data = file.read_bytes()  # read once: the bytes checked are the bytes loaded
    except FileNotFoundError:  # the sidecar is written first: an export killed before its backbone
        raise UserError(f"{flag}: {file} not found beside its sidecar {meta_path}: the export was interrupted "
                        f"or the file moved; {again}") from None
    except OSError as exc:
        raise UserError(f"{flag}: cannot read {file} ({exc.strerror or exc})") from None
    if "sha256" in meta and file_identity(data)["sha256"] != meta["sha256"]:  # older sidecars have none: no check
        raise UserError(f"{flag}: {file} is not the file its sidecar {meta_path} describes (SHA-256 differs): the "
                        f"export was interrupted or the file changed; {again}")
    if meta.get("format") == "safetensors":  # before the catch-all below, which would call it a bad file
        _safetensors(f"{flag} {file} (a safetensors file)")
    try:
        net, _ = build_backbone_spec(architecture, shape, meta.get("mlp_hidden_dim", 64), meta.get("resnet_width", 64))
        net.load_state_dict(_loaded(data, meta.get("format", "pt")), strict=True)  # pt or safetensors
    except Exception as exc:  # noqa: BLE001 -- any unreadable or mismatched file is one user-facing line
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{flag}: {file} does not load into {architecture} of input {shape} ({reason})") from None
    if meta.get("channels_last"):  # the layout the run trained and evaluated in: the same rounding
        net.to(memory_format=torch.channels_last)
    return net.eval(), meta


def _verify(spec: BackboneSpec, library: str, state: dict[str, torch.Tensor]) -> None:
    """Build ``library``'s model as the sidecar's code does (:meth:`BackboneSpec.build`) and load the
    exported tensors into it with ``strict=True``."""
    try:
        spec.build(library).load_state_dict(state, strict=True)
    except ArchitectureError as err:
        raise UserError(f"--format: {err}") from None
    except ImportError as exc:
        raise UserError(f"--format: checking the export needs {exc.name}: pip install {exc.name}") from None
    except (RuntimeError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        raise UserError(f"--format: the backbone does not load into that model with strict=True ({reason})") from None


def export_backbone(run: Run, out: str, encoder: str | None = None, checkpoint: str | None = None,
                    overwrite: bool = False, fmt: str | None = None) -> dict[str, Any]:
    """Write the chosen encoder's backbone to ``out`` (and ``out.json``); return the sidecar's content."""
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)} (got {fmt!r})")
    out_path = Path(out)
    if fmt is None and out_path.suffix.lower() == ".safetensors":  # the name says the format (a torch zip was
        fmt = "safetensors"                                         # written under it, and embed could not read it)
    if not out_path.parent.is_dir():  # the folder is made once everything is validated
        existing = next((p for p in (out_path.parent, *out_path.parent.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise UserError(f"--out: {existing} is a file, so the folder {out_path.parent} cannot be made")
        if out_path.is_symlink():
            raise UserError(f"--out: {out_path} exists and is not a regular file; refusing to replace it")
    else:
        out_path = check_output_file(out_path, overwrite)
    side = sidecar_path(out_path)
    if side.is_symlink() or (side.exists() and not side.is_file()):  # checked before the backbone is written
        raise UserError(f"--out: {side} exists and is not a regular file; refusing to replace it")
    if side.exists() and not overwrite:
        alone = "" if out_path.exists() else f" without {out_path.name} (an interrupted export)"
        raise UserError(f"--out: {side} already exists{alone}; pass --overwrite to replace it")
    _, path = checkpoints_to_use(run, checkpoint)[0]  # the first seed unless --checkpoint says otherwise
    ckpt = load_checkpoint(path)
    cfg = run.cfg
    if "input_shape" in ckpt:
        input_shape = tuple(int(s) for s in ckpt["input_shape"])
    else:  # checkpoints written before the input shape was recorded: ask the dataset
        input_shape = tuple(build_data(cfg, torch.device("cpu"), int(ckpt["seed"])).input_shape)
    method = rebuild_method(cfg, ckpt, path, input_shape)
    key = choose_encoder(method.encoders(), method.row_labels(), encoder)
    backbone: nn.Module = method.encoders()[key].backbone
    try:
        with torch.device("meta"):  # the recipe only; the weights are the checkpoint's
            spec = build_backbone_spec(cfg.architecture, input_shape, cfg.mlp_hidden_dim, cfg.resnet_width)[1]
    except ArchitectureError as err:
        raise UserError(f"{cfg.architecture}: {err}") from None
    library, file_format = _target_library(spec, fmt)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
    data = _serialize(state, file_format, {"architecture": cfg.architecture, "library": library})
    if library == "mimax":  # mimax's own backbone: load into a fresh one built from the spec
        fresh = build_backbone_spec(cfg.architecture, input_shape, cfg.mlp_hidden_dim, cfg.resnet_width)[0]
        fresh.load_state_dict(_loaded(data, file_format), strict=True)
    else:
        _verify(spec, library, _loaded(data, file_format))
    code = None if library == "mimax" else load_code(spec, library, file_format, str(out_path))
    info = {**sidecar(cfg, spec, library, file_format, key, path, ckpt, input_shape, out_path, code),
            **file_identity(data)}
    # The backbone's bytes are staged first (written in full, not yet in place): a full disk fails there and
    # replaces nothing, so an --overwrite keeps the old export whole. Then the sidecar, with the new file's
    # SHA-256, then the backbone's rename: killed between the two, the new sidecar sits beside the old
    # backbone (or none), which load_exported refuses. The other way round, a new backbone could sit beside an
    # older sidecar without a hash, and be embedded under the other encoder's description.
    with parent_made_for(out_path), staged_bytes(out_path, data) as put_backbone_in_place:  # validated: folder now
        atomic_write_text(side, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        put_backbone_in_place()
    remove_torn_writes(side)
    remove_torn_writes(out_path)
    return info


def sidecar(cfg, spec: BackboneSpec, library: str, file_format: str, encoder: str, checkpoint: Path,
            ckpt: dict[str, Any], input_shape: tuple[int, ...], out: Path, code: str | None) -> dict[str, Any]:
    """The JSON sidecar: what the file holds and how to load it."""
    normalization = None
    if len(input_shape) == 3:
        mean, std = dataset_normalization(cfg.dataset)
        if len(mean) != input_shape[0]:  # as the view recipes do for another channel count
            mean, std = (sum(mean) / len(mean),) * input_shape[0], (sum(std) / len(std),) * input_shape[0]
        normalization = {"mean": list(mean), "std": list(std), "pixel_scale": "[0, 1]"}
    if library == "mimax" and spec.model == "MLP":
        how = (f"the MLP backbone (not a torchvision model): mimax.nets.backbones.mlp_backbone({input_shape[0]}, "
               f"{cfg.mlp_hidden_dim})")
    elif library == "mimax":
        how = (f"mimax's {cfg.architecture} backbone of this run's config (--resnet_width {cfg.resnet_width}), "
               f"not torchvision's {cfg.architecture.lower()}, whose base width is 64")
    elif library == "timm":
        how = f"timm.create_model({spec.model!r}, ...) with strict=True"
    else:
        how = f"torchvision.models.{spec.model} with strict=True"
    info = {
        "file": out.name, "format": file_format, "library": library, "model": spec.model,
        "builder_kwargs": spec.kwargs if library == spec.library else {"num_classes": 0},
        "modifications": [s.to_dict() for s in spec.swaps],
        "architecture": cfg.architecture, "stem": spec.stem, "input_shape": list(input_shape),
        "normalization": normalization, "feature_dim": spec.feature_dim, "loads_into": how,
        "load": code, "encoder": encoder, "method": cfg.model_name, "dataset": cfg.dataset,
        "checkpoint": str(checkpoint), "epoch": int(ckpt.get("epoch", 0)), "mimax_version": __version__,
        # what `mimax embed --backbone` rebuilds and feeds it with
        "resnet_width": cfg.resnet_width, "mlp_hidden_dim": cfg.mlp_hidden_dim, "channels_last": cfg.channels_last,
        "precision": cfg.precision,  # the autocast dtype its run evaluated in (mimax embed uses it)
    }
    if len(input_shape) == 3:
        info["preprocessing"] = eval_preprocessing(cfg.dataset, input_shape).to_dict()
    return info
