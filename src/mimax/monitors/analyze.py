"""``mimax analyze MODEL --output_dir DIR``: one report page (``analysis.json``, ``analysis.md``,
``analysis.png``) of a trained encoder, whatever library trained it.

MODEL is one of
- a mimax run (an experiment directory or a ``seed_<k>`` directory; its latest checkpoint, its data settings
  by default) or one of its checkpoints (``.../seed_<k>/checkpoints/ckpt_epoch_<n>.pt``): its backbone and
  its projector output (``embedding``) are analyzed;
- a backbone exported by ``mimax export`` (a state_dict file): needs ``--dataset`` (the architecture is
  recognized from the file: the dataset's ResNet18/50 stem or the MLP);
- a torchvision architecture name (``resnet18``, ``vit_b_16``, ...) with ``--weights FILE`` (a state_dict;
  its classification head is replaced by the identity and ignored): needs ``--dataset``. Grey images are
  repeated to the 3 channels such a model expects.

On the dataset's fixed monitor set (two views per image, the same for every model) it computes every
monitor of :func:`mimax.monitors.api.monitor_values` (trained-critic MI with its interval, fixed-critic
contrast scores, RankMe, LiDAR, alpha-ReQ, alignment, uniformity), and with labels a linear probe and kNN
on the frozen features, so checkpoints from any library compare on one page.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mimax.config import config_from_args, validate
from mimax.config.presets import refuse_unread_data_flags
from mimax.data import build_data
from mimax.errors import OneLineParser, UserError
from mimax.evaluation.export import choose_encoder, load_exported, sidecar_path
from mimax.evaluation.probe import extract_features, knn_accuracy, linear_probe
from mimax.evaluation.runs import checkpoints_to_use, open_run, rebuild_method
from mimax.fit import knn_k_for
from mimax.monitors.api import monitor_values
from mimax.monitors.base import run_dtype
from mimax.naming import printable
from mimax.nets.backbones import mlp_backbone, resnet_backbone
from mimax.runtime.device import PRECISION_DTYPES, autocast_to, resolve_device
from mimax.store.atomic import atomic_write_bytes, remove_torn_writes, write_json
from mimax.store.checkpoint import load_checkpoint
from mimax.store.rundir import check_outside_runs

REPORT_FILES = ("analysis.json", "analysis.md", "analysis.png")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="mimax analyze", description="Monitors (trained-critic MI, contrast scores, RankMe, "
                       "LiDAR, alpha-ReQ, alignment/uniformity), linear probe and kNN of one encoder: "
                       "analysis.json, analysis.md and analysis.png in --output_dir.")
    p.add_argument("model", metavar="MODEL", help="a mimax run directory or checkpoint, a backbone from `mimax "
                   "export`, or a torchvision architecture name (with --weights)")
    p.add_argument("--output_dir", required=True, help="folder for the report (created; must not hold a report "
                   "unless --overwrite)")
    p.add_argument("--weights", metavar="FILE", help="state_dict for a torchvision architecture name")
    p.add_argument("--dataset", help="dataset (default for a mimax run: its own); required otherwise")
    p.add_argument("--data_dir", help="dataset location")
    p.add_argument("--encoder", help="mimax run: which encoder (f, f_theta, g_xi; default: the first)")
    p.add_argument("--monitor_size", type=int, help="image datasets: monitor pairs (default: the dataset's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--num_threads", type=int, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --output_dir")
    return p


# analyze trains nothing: a training batch (256 by default) must not refuse a dataset smaller than one
ANALYZE_BATCH = 2


def _data_config(base, dataset: str | None, data_dir: str | None, monitor_size: int | None):
    """The data settings: the run's config (when there is one) with the flags given here on top, and the
    smallest training batch (:data:`ANALYZE_BATCH`)."""
    import dataclasses

    given = {k: v for k, v in (("dataset", dataset), ("data_dir", data_dir), ("monitor_size", monitor_size))
             if v is not None}
    # --monitor_size on the Gaussian mixture (its monitor set is gm_monitor_size), --data_dir on Digits: refused
    refuse_unread_data_flags(given.get("dataset") or (base.dataset if base is not None else ""), given)
    if base is not None and given.get("dataset", base.dataset) == base.dataset:
        cfg = dataclasses.replace(base, **given, batch_size=ANALYZE_BATCH)
        validate(cfg)  # --monitor_size and --data_dir as training checks them
        return cfg
    argv = [item for k, v in given.items() for item in (f"--{k}", str(v))]
    return config_from_args(argv + ["--num_runs", "1", "--batch_size", str(ANALYZE_BATCH)])


class _Encoder(nn.Module):
    """``x -> {representation: features}`` for a loaded model."""

    def __init__(self, backbone: nn.Module, projector: nn.Module | None = None, grey_to_rgb: bool = False,
                 dtype: torch.dtype | None = None, channels_last: bool = False):
        super().__init__()
        self.backbone, self.projector, self.grey_to_rgb = backbone, projector, grey_to_rgb
        # a mimax run is measured as its training measured it: under autocast to its --precision, in its layout
        self.dtype, self.channels_last = dtype, channels_last

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.grey_to_rgb and x.ndim == 4 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_to(x.device, self.dtype):
            h = self.backbone(x)
            if h.ndim > 2:
                h = torch.flatten(h, 1)
            out = {"backbone": h}
            if self.projector is not None:
                out["embedding"] = self.projector(h)
        return {k: v.float() for k, v in out.items()}


def _load_state(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix: one line
        raise UserError(f"{path}: not a PyTorch file that loads with weights_only=True "
                        f"({str(exc).strip().splitlines()[0][:120]})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a state_dict (a dict of tensors) or a mimax checkpoint")
    return obj


def _mimax_run(path: Path, encoder: str | None) -> tuple[Any, _Encoder, str]:
    if path.is_file():  # a checkpoint of a run: .../seed_<k>/checkpoints/ckpt_epoch_<n>.pt
        run = open_run(str(path.resolve().parent.parent))
        seed_dir, ckpt_path = checkpoints_to_use(run, str(path))[0]
    else:
        run = open_run(str(path))
        seed_dir, ckpt_path = checkpoints_to_use(run, None)[0]
    ckpt = load_checkpoint(ckpt_path)
    if "input_shape" not in ckpt:
        raise UserError(f"{ckpt_path}: checkpoint predates the recorded input shape; re-save it with this mimax")
    method = rebuild_method(run.cfg, ckpt, ckpt_path, tuple(int(s) for s in ckpt["input_shape"]))
    if run.cfg.channels_last:  # the layout training measured in (NHWC convolutions round differently)
        method.to(memory_format=torch.channels_last)
    key = choose_encoder(method.encoders(), method.row_labels(), encoder)
    enc = method.encoders()[key]
    return run.cfg, _Encoder(enc.backbone, enc.projector, dtype=run_dtype(run.cfg),
                             channels_last=run.cfg.channels_last), f"mimax {run.cfg.model_name} ({key}), {ckpt_path}"


def _exported_backbone(state: dict[str, Any], path: Path, cfg, input_shape: tuple[int, ...]) -> tuple[_Encoder, str]:
    """A backbone state_dict without its ``mimax export`` sidecar: mimax's ResNet18/50 (base width 64) or MLP
    (``--mlp_hidden_dim`` of the config), recognized by a strict load."""
    candidates = []
    if len(input_shape) == 1:
        candidates.append(("MLP", lambda: mlp_backbone(input_shape[0], cfg.mlp_hidden_dim)))
    else:
        candidates += [(a, lambda a=a: resnet_backbone(a, max(input_shape[1:]), input_shape[0])[0])
                       for a in ("ResNet18", "ResNet50")]
    for name, make in candidates:
        net = make()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError:
            continue
        return _Encoder(net), f"exported {name} backbone {path}"
    raise UserError(f"{path}: a state_dict that loads into none of "
                    f"{', '.join(n for n, _ in candidates)} (default widths) for {cfg.dataset} inputs "
                    f"{tuple(input_shape)}, and no {sidecar_path(path).name} beside it (mimax export writes one, "
                    "with the architecture and widths); for a torchvision model pass its name and --weights")


def _with_sidecar(net: nn.Module, meta: dict[str, Any], path: Path, dataset: str,
                  input_shape: tuple[int, ...]) -> tuple[_Encoder, str]:
    """An exported backbone rebuilt from its sidecar (:func:`~mimax.evaluation.export.load_exported`), checked
    against the dataset's inputs: the same kind (vectors of the same size, or images of the same channels)."""
    exported = tuple(int(v) for v in meta["input_shape"])
    same = exported == input_shape if len(exported) == 1 else (len(input_shape) == 3 and exported[0] == input_shape[0])
    if not same:
        raise UserError(f"--dataset: {path} was exported for inputs {exported} ({meta.get('dataset', '?')}); "
                        f"{dataset} gives {input_shape}")
    # the precision its run evaluated in (older sidecars: fp32), as `mimax embed` reads it
    dtype = PRECISION_DTYPES.get(meta.get("precision") or "fp32")
    return _Encoder(net, dtype=dtype, channels_last=bool(meta.get("channels_last"))), \
        f"exported {meta['architecture']} backbone {path} ({meta.get('method', '?')} on {meta.get('dataset', '?')})"


def _torchvision_name(name: str) -> str:
    """``name`` if torchvision knows the architecture; else the one-line error for a MODEL that is neither an
    existing path nor such a name."""
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        other = name in torchvision.models.list_models()  # detection, segmentation, video, optical flow, ...
        raise UserError(f"MODEL: {name!r} is " + ("a torchvision model that is not an image classifier; expected a "
                        "classification architecture" if other else "neither an existing path (a mimax run, "
                        "checkpoint or exported backbone) nor a torchvision classification architecture name")
                        + " (e.g. resnet18, resnet50, convnext_tiny)")
    return name


def _mismatch(expected: dict[str, Tensor], given: dict[str, Any]) -> str:
    """What keeps ``given`` from loading into a module whose state is ``expected``: missing and unexpected keys
    and shape mismatches, counted, with the first few named."""
    def named(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in given and isinstance(given[k], Tensor) and given[k].shape != v.shape]
    parts = [f"{len(ks)} {what} ({named(ks)})" for what, ks in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if ks]
    return "; ".join(parts) or "values that are not tensors"


def _torchvision_model(name: str, weights: Path) -> tuple[nn.Module, list[str]]:
    """torchvision's ``name`` with the state_dict ``weights``, its classification head replaced by the identity
    (the head's weights ignored: their keys are returned)."""
    import torchvision

    state = _load_state(weights)
    if isinstance(state.get("state_dict"), dict):  # a training checkpoint (Lightning, solo-learn): its weights
        state = state["state_dict"]
    net = torchvision.models.get_model(name, weights=None)
    head = [a for a in ("fc", "classifier", "heads", "head") if isinstance(getattr(net, a, None), nn.Module)]
    for h in head:
        setattr(net, h, nn.Identity())
    expected = net.state_dict()
    best = None
    for prefix in ("", *WRAPPER_PREFIXES):  # the keys as saved, or under the prefix an SSL wrapper adds
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if inner and set(expected) <= set(inner):
            best = prefix, inner
            break
    prefix, inner = best or ("", state)
    ignored = sorted(k for k in state if not k.startswith(prefix)
                     or any(k[len(prefix):].startswith(h + ".") for h in head))
    kept = {k[len(prefix):]: v for k, v in state.items() if k not in ignored}
    try:
        net.load_state_dict(kept, strict=True)
    except (RuntimeError, TypeError, AttributeError):
        raise UserError(f"--weights: {weights} does not match torchvision's {name}: "
                        f"{_mismatch(expected, kept)}") from None
    return net, ignored


# The key prefixes under which SSL libraries save a backbone beside its heads (solo-learn and lightly's
# ``backbone.``, DataParallel/DDP's ``module.``, ...): a --weights file is also read under each of them, the
# first that holds every key of the architecture winning; the rest is listed as ignored.
WRAPPER_PREFIXES = ("backbone.", "module.", "module.backbone.", "encoder.", "model.", "encoder_q.", "momentum_encoder.")


def _check_input(encoder: _Encoder, x: Tensor, what: str, dataset: str, device: torch.device) -> None:
    """One forward pass on two monitor images: an architecture that cannot take the dataset's inputs (a
    ViT's fixed 224-px patch grid on 32-px images, a stem that shrinks 8-px images to nothing) fails here in
    one line instead of a traceback."""
    try:
        with torch.no_grad():
            encoder(x[:2].to(device))
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--dataset: {what} cannot take {dataset}'s inputs of shape {tuple(x.shape[1:])} "
                        f"({reason})") from None


@torch.no_grad()
def _embed_pairs(encoder: _Encoder, x_a: Tensor, x_b: Tensor, device: torch.device,
                 batch: int = 256) -> dict[str, tuple[Tensor, Tensor]]:
    out: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
    for i in range(0, x_a.shape[0], batch):
        ra, rb = encoder(x_a[i:i + batch].to(device)), encoder(x_b[i:i + batch].to(device))
        for k in ra:
            out.setdefault(k, ([], []))[0].append(ra[k].float().cpu())
            out[k][1].append(rb[k].float().cpu())
    return {k: (torch.cat(a), torch.cat(b)) for k, (a, b) in out.items()}


def _interrupted_export(path: Path) -> bool:
    """``path`` is missing and beside it lies a sidecar that ``mimax export`` wrote (it holds the backbone's
    SHA-256): an export killed before its backbone was written, not a model name (``resnet18`` beside some
    ``resnet18.json`` of the user's)."""
    if path.exists():
        return False
    try:
        return "sha256" in json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError, TypeError):
        return False


def analyze(args: argparse.Namespace) -> dict[str, Any]:
    """Load, measure and return the report (nothing written)."""
    device = resolve_device(args.device)
    path = Path(args.model)
    run_cfg = None
    ignored: list[str] = []
    # a sidecar beside no file: an export killed before its backbone was written (load_exported says so)
    exported = (load_exported(path, "MODEL") if (path.is_file() or _interrupted_export(path))
                and sidecar_path(path).is_file() else None)
    state = _load_state(path) if path.is_file() and exported is None else None
    if path.is_dir() or (state is not None and "model" in state and "method" in state):
        run_cfg, encoder, source = _mimax_run(path, args.encoder)
    elif args.encoder is not None:
        raise UserError("--encoder: only applies to a mimax run or checkpoint")
    dataset = args.dataset if args.dataset is not None or exported is None else exported[1].get("dataset")
    if run_cfg is None and dataset is None:
        raise UserError("--dataset: required unless MODEL is a mimax run, checkpoint or exported backbone")
    if args.weights is not None and (path.exists() or run_cfg is not None):
        raise UserError("--weights: only applies to a torchvision architecture name")
    if path.exists() and not path.is_file() and run_cfg is None:
        raise UserError(f"MODEL: {path} is neither a file nor a mimax run directory")
    architecture = None if path.exists() else _torchvision_name(args.model)
    if architecture is not None:  # checked before any data is read
        if args.weights is None:
            raise UserError(f"--weights: a torchvision architecture name ({architecture}) needs a weights file")
        if not Path(args.weights).is_file():
            raise UserError(f"--weights: {args.weights} is not a file")
        net, ignored = _torchvision_model(architecture, Path(args.weights))
    cfg = _data_config(run_cfg, dataset, args.data_dir, args.monitor_size)
    data = build_data(cfg, torch.device("cpu"), cfg.seed)
    if data.monitor_views is None:
        raise UserError(f"--dataset: {cfg.dataset} provides no monitor set")
    if run_cfg is None:
        if exported is not None:
            encoder, source = _with_sidecar(*exported, path, cfg.dataset, tuple(data.input_shape))
        elif path.is_file():
            encoder, source = _exported_backbone(state, path, cfg, tuple(data.input_shape))
        else:
            if len(data.input_shape) != 3:
                raise UserError(f"MODEL: a torchvision image model needs an image dataset "
                                f"(got inputs {tuple(data.input_shape)})")
            encoder = _Encoder(net, grey_to_rgb=data.input_shape[0] == 1)
            source = f"torchvision {architecture}, weights {args.weights}"
    encoder = encoder.to(device)
    encoder.eval()
    x_a, x_b = data.monitor_views
    _check_input(encoder, x_a, source.split(",")[0], cfg.dataset, device)
    reps = _embed_pairs(encoder, x_a, x_b, device)
    report: dict[str, Any] = {"model": source, "dataset": cfg.dataset, "monitor_pairs": int(x_a.shape[0]),
                              "ignored_weights": ignored, "representations": {}}
    for rep, (za, zb) in reps.items():
        report["representations"][rep] = {"dim": int(za.shape[1]), **monitor_values(za, zb)}
    if data.probe_train is not None and data.probe_test is not None and data.num_classes:
        workers = data.extras.get("eval_workers", 0)
        tr, ytr = extract_features(lambda x: encoder(x)["backbone"], data.probe_train, device, num_workers=workers)
        te, yte = extract_features(lambda x: encoder(x)["backbone"], data.probe_test, device, num_workers=workers)
        report["probe"] = {"linear": linear_probe(tr, ytr, te, yte, data.num_classes),
                           "knn": knn_accuracy(tr, ytr, te, yte, data.num_classes, knn_k_for(cfg.knn_k, tr.shape[0]),
                                               cfg.knn_temperature),
                           "knn_k": knn_k_for(cfg.knn_k, tr.shape[0]), "train_size": int(tr.shape[0]),
                           "test_size": int(te.shape[0])}
    report["_spectra"] = {rep: torch.linalg.svdvals(za.double()).tolist() for rep, (za, _) in reps.items()}
    return report


ROWS = (("mi_infonce", "MI, trained critic (InfoNCE, nats)"), ("mi_infonce_low", "  95% CI low"),
        ("mi_infonce_high", "  95% CI high"), ("mi_log_n", "  ceiling log N"),
        ("score_InfoNCE_gap", "fixed-critic InfoNCE gap (contrast, not MI)"),
        ("score_cos-DV_gap", "fixed-critic cos-DV gap (contrast, not MI)"), ("rankme", "RankMe"),
        ("lidar", "LiDAR"), ("alpha_req", "α-ReQ"), ("alignment", "alignment (lower: aligned)"),
        ("uniformity", "uniformity (lower: uniform)"), ("emb_std", "normalized-embedding std"),
        ("emb_erank", "effective rank (covariance)"))


def report_markdown(report: dict[str, Any]) -> str:
    reps = list(report["representations"])
    lines = [f"# Analysis of {report['model']}", "",
             f"Dataset {report['dataset']}, {report['monitor_pairs']} fixed monitor pairs (two views per image). "
             "Definitions: docs/monitoring.md.", ""]
    if report.get("ignored_weights"):
        lines += [f"Head weights ignored: {', '.join(report['ignored_weights'])}.", ""]
    lines += ["| monitor | " + " | ".join(f"{r} (D={report['representations'][r]['dim']})" for r in reps) + " |",
              "|---|" + "---|" * len(reps)]
    for key, label in ROWS:
        vals = [report["representations"][r].get(key) for r in reps]
        lines.append(f"| {label} | " + " | ".join("" if v is None else f"{v:.4g}" for v in vals) + " |")
    if "probe" in report:
        p = report["probe"]
        lines += ["", f"Backbone features: linear probe top-1 **{100 * p['linear']:.2f}%**, kNN top-1 "
                      f"**{100 * p['knn']:.2f}%** ({p['train_size']} train / {p['test_size']} test images)."]
    return "\n".join(lines) + "\n"


def report_figure(report: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = list(report["representations"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for rep in reps:
        s = [v for v in report["_spectra"][rep] if v > 0]
        axes[0].loglog(range(1, len(s) + 1), [v / s[0] for v in s], label=f"{rep} (RankMe "
                       f"{report['representations'][rep]['rankme']:.1f})")
    axes[0].set(title="singular values of the embedding matrix (normalized)", xlabel="k")
    xs = range(len(reps))
    mi = [report["representations"][r].get("mi_infonce", math.nan) for r in reps]
    lo = [m - report["representations"][r].get("mi_infonce_low", m) for m, r in zip(mi, reps)]
    hi = [report["representations"][r].get("mi_infonce_high", m) - m for m, r in zip(mi, reps)]
    axes[1].bar(xs, mi, yerr=[lo, hi], capsize=6, color="#1f77b4")
    axes[1].set(xticks=list(xs), xticklabels=reps, title="MI between two views, trained critic (nats, 95% CI)")
    for k, key in enumerate(("lidar", "alignment", "uniformity")):
        axes[2].bar([i + 0.25 * (k - 1) for i in xs], [report["representations"][r][key] for r in reps],
                    width=0.25, label=key)
    axes[2].set(xticks=list(xs), xticklabels=reps, title="LiDAR, alignment, uniformity")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(printable(report["model"]), fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def cmd_analyze(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.num_threads is not None:
        if args.num_threads < 1:
            raise UserError(f"--num_threads: must be >= 1 (got {args.num_threads})")
        torch.set_num_threads(args.num_threads)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir: {out} exists and is not a directory")
    files = [out / f for f in REPORT_FILES]
    for f in files:
        if f.is_symlink() or (f.exists() and not f.is_file()):
            raise UserError(f"--output_dir: {f} exists and is not a regular file; refusing to replace it")
    present = [f.name for f in files if f.exists()]
    if present and not args.overwrite:
        if REPORT_FILES[0] not in present:  # the report's completion mark is missing: see below
            raise UserError(f"--output_dir: {out} holds an unfinished report ({', '.join(present)} without "
                            f"{REPORT_FILES[0]}: an interrupted mimax analyze); pass --overwrite to replace it")
        raise UserError(f"--output_dir: {out} already holds a report; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise UserError(f"--output_dir: parent directory {out.parent} does not exist")
    check_outside_runs(out / REPORT_FILES[0], [args.model], flag="--output_dir", what="reports")
    report = analyze(args)  # everything is loaded and measured before anything is written
    png = report_figure(report)
    md = report_markdown(report)
    made = not out.exists()
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"--output_dir: cannot write to {out} ({exc.strerror or exc})") from None
    # analysis.json is the report's completion mark, written last with the SHA-256 of the .md and .png it goes
    # with; the old report is removed first (its .json first). A kill anywhere in between leaves part of the new
    # report without analysis.json, never a new file beside an old one of another model.
    for f in files:
        try:
            f.unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(f"--output_dir: cannot replace {f} ({exc.strerror or exc})") from None
    md_bytes = printable(md).encode()  # the bytes written (a path that is not UTF-8 as its escape) are hashed
    digests = {"analysis.md": hashlib.sha256(md_bytes).hexdigest(), "analysis.png": hashlib.sha256(png).hexdigest()}
    written: list[Path] = []
    try:  # a failed write (a full disk) takes back what this invocation wrote: no partial report stays
        for name, data in (("analysis.md", md_bytes), ("analysis.png", png)):
            atomic_write_bytes(out / name, data)
            written.append(out / name)
        write_json(out / "analysis.json", {**{k: v for k, v in report.items() if k != "_spectra"},
                                           "files_sha256": digests})
    except BaseException:
        for f in written:
            f.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    for f in files:
        remove_torn_writes(f)
    print(md.rstrip())
    print(f"report written to {out}: {', '.join(REPORT_FILES)}")
    return 0
