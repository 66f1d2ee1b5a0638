"""One typed configuration for a training job: built from flags and/or a YAML file, validated before work.

Precedence (lowest to highest): field defaults < dataset preset < method preset < YAML file < flags.
Fields whose default is ``None`` are "auto": a preset fills them, and :func:`resolve` fails loudly if
nothing does. Every field is a flag of the same name (``--model_name``, ``--initial_lr``, ...), which
keeps the reference repository's command line valid unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mimax.errors import UserError


class ConfigError(UserError):
    """A user mistake in the configuration. ``str(err)`` is the one-line message shown to the user."""

    def __init__(self, flag: str, message: str):
        self.flag = flag
        super().__init__(f"{flag}: {message}" if flag else message)


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    # --- the reference repository's flags -------------------------------------------------------
    model_name: str = _opt("SDMI", "method to train (see `mimax methods`)")
    dataset: str = _opt("Gaussian", "dataset (Gaussian = the embedded synthetic mixture)")
    architecture: str | None = _opt(None, "backbone: MLP (vector data), ResNet18, ResNet50, any torchvision "
                                          "classification model (resnet34, convnext_tiny, vit_b_16, ...) or "
                                          "timm:<model> (timm extra); auto by dataset")
    num_classes: int | None = _opt(None, "number of classes; checked against the dataset when given")
    epochs: int | None = _opt(None, "pretraining epochs")
    warmup_epochs: int | None = _opt(None, "epochs of linear LR warmup (per step) before cosine decay")
    batch_size: int | None = _opt(None, "images (or vectors) per step; each gives two views")
    initial_lr: float | None = _opt(None, "base learning rate (after warmup, before cosine decay)")
    weight_decay: float | None = _opt(None, "weight decay (L2; not applied to biases/norms with LARS)")
    temperature: float | None = _opt(None, "critic temperature tau of contrastive/DV objectives")
    num_runs: int = _opt(1, "independent runs with seeds seed..seed+num_runs-1; results are mean ± std")
    augmentation: bool = _opt(False, "strong augmentation recipe (Gaussian: add random scaling to view noise)")
    feature_dim: int | None = _opt(None, "hidden width of the projector MLP")
    projection_dim: int | None = _opt(None, "output width of the projector (the embedding dimension D)")
    projection_layer: int | None = _opt(None, "number of linear layers in the projector (1..3)")
    model_save_interval: int | None = _opt(None, "save a checkpoint every N epochs (and always at the end)")
    model_evaluation_interval: int | None = _opt(
        None, "linear-probe every N epochs (and always at the end)"
    )
    num_workers: int = _opt(2, "DataLoader worker processes (image datasets)")
    # --- run management ------------------------------------------------------------------------
    output_dir: str | None = _opt(None, "experiment directory (default: runs/<method>_<dataset>_<time>)")
    seed: int = _opt(0, "base random seed")
    resume: str | None = _opt(None, "resume from an experiment dir, a seed_<k> dir or a checkpoint file")
    overwrite: bool = _opt(False, "allow writing into an existing non-empty output_dir")
    stop_after: int | None = _opt(None, "stop (resumably) after this many epochs in this invocation")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N or mps")
    num_threads: int | None = _opt(None, "torch CPU threads (default: torch's choice)")
    tensorboard: bool = _opt(False, "also write TensorBoard event files (needs the tensorboard extra)")
    wandb: bool = _opt(False, "also log to Weights & Biases, one W&B run per seed, continued by --resume (needs "
                              "the wandb extra)")
    wandb_project: str = _opt("mimax", "W&B project")
    wandb_entity: str | None = _opt(None, "W&B entity (user or team; default: W&B's own setting)", optional=True)
    wandb_mode: str | None = _opt(None, "W&B mode: online, offline (no network; `wandb sync` uploads later) or "
                                        "disabled (default: W&B's own setting, e.g. WANDB_MODE)", optional=True)
    data_dir: str | None = _opt(None, "dataset location on disk (image datasets)")
    # --- optimization ----------------------------------------------------------------------------
    optimizer: str | None = _opt(None, "sgd, lars, adam or adamw")
    momentum: float = _opt(0.9, "SGD/LARS momentum")
    lars_eta: float = _opt(0.02, "LARS trust coefficient eta (solo-learn's default)")
    # --- method options ------------------------------------------------------------------------
    no_marginal: bool = _opt(False, "drop the marginal (negative) term of the DV objective (SDMI/JMI ablation)")
    # --- methods (issue #3): self-distillation and method hyperparameters -------------------------
    target_update: str | None = _opt(
        None, "SDMI: how the target g_ξ follows f_θ: alternate (own gradient steps), ema or copy; fixed by the "
              "other self-distillation methods (auto)", optional=True)
    target_init: str | None = _opt(None, "SDMI: g_ξ initialized independently of f_θ or as a copy (auto: "
                                         "independent)", optional=True)
    alternation_period: int = _opt(1, "SDMI alternate: steps each side takes before switching θ <-> ξ")
    predictor: bool = _opt(False, "SDMI: add an MLP predictor q on the online side, S_ij = cos(q(u_i), v_j)/tau")
    ema_momentum: float | None = _opt(None, "EMA target: base momentum m_0, raised to 1 on a cosine over the run "
                                            "(auto per method and dataset)", optional=True)
    predictor_dim: int | None = _opt(None, "predictor hidden width h (auto per method and dataset)", optional=True)
    barlow_lambda: float | None = _opt(None, "Barlow Twins: weight of the off-diagonal (redundancy) term (auto: "
                                             "5.1e-3)", optional=True)
    barlow_scale: float | None = _opt(None, "Barlow Twins: overall loss scale (auto: 1, 0.1 on CIFAR)", optional=True)
    vicreg_sim_coeff: float = _opt(25.0, "VICReg: weight of the invariance (MSE) term")
    vicreg_std_coeff: float = _opt(25.0, "VICReg: weight of the variance (std hinge) term")
    vicreg_cov_coeff: float = _opt(1.0, "VICReg: weight of the covariance term")
    # --- Gaussian mixture (METHODS.md §7) ------------------------------------------------------------
    gm_clusters: int = _opt(5, "Gaussian mixture: number of clusters K")
    gm_dim: int = _opt(16, "Gaussian mixture: input dimension d")
    gm_radius: float = _opt(3.0, "Gaussian mixture: radius of the sphere the means are drawn on")
    gm_sigma: float = _opt(1.0, "Gaussian mixture: within-cluster standard deviation")
    gm_view_noise: float = _opt(0.5, "Gaussian mixture: std of the independent per-view noise")
    gm_train_size: int = _opt(5000, "Gaussian mixture: training points")
    gm_test_size: int = _opt(1000, "Gaussian mixture: test points")
    gm_monitor_size: int = _opt(2048, "Gaussian mixture: held-out monitor points")
    gm_data_seed: int = _opt(0, "Gaussian mixture: seed fixing the mixture (means and samples)")
    mlp_hidden_dim: int = _opt(64, "MLP backbone width (input -> h -> h)")
    # --- evaluation ----------------------------------------------------------------------------
    knn_k: int = _opt(200, "k of the kNN evaluation")
    knn_temperature: float = _opt(0.07, "temperature of the kNN vote weights exp(cos/T)")
    # --- image datasets, augmentation and ResNet width (issue 6; docs/data.md) ----------------------
    download: bool = _opt(False, "fetch the dataset into --data_dir with torchvision's downloader "
                                 "(CIFAR10, CIFAR100, MNIST, FashionMNIST; needs internet)")
    class_list: str | None = _opt(None, "ImageNet100: file of WordNet ids, one per line, selecting the classes "
                                        "(default: CMC's 100-class list shipped with mimax)", optional=True)
    no_labels: bool = _opt(False, "use the images without labels: pretraining only, linear probe and kNN "
                                  "are skipped (required by --dataset Folder)")
    gpu_augment: bool = _opt(False, "batched augmentation on the training device (CPU too), independent "
                                    "random parameters per image, instead of per-image torchvision "
                                    "transforms in DataLoader workers")
    resnet_width: int = _opt(64, "base width of the ResNet (channels of its first stage; 16 for the CPU protocol)")
    image_size: int | None = _opt(None, "side of the square crops trained and evaluated on (auto: the "
                                        "dataset's native size; 224 for ImageNet100/ImageFolder/Folder)", optional=True)
    view_recipe: str = _opt("auto", "augmentation family used with --augmentation: simclr (symmetric), "
                                    "byol (asymmetric), auto (the method's choice, else simclr)")
    train_subset: int | None = _opt(None, "use a fixed subset of N training images (the same for every seed)",
                                    optional=True)
    test_subset: int | None = _opt(None, "use a fixed subset of N test images (the same for every seed)",
                                   optional=True)
    monitor_size: int | None = _opt(None, "image datasets: number of fixed held-out view pairs for the MI "
                                          "monitors (auto: 2048; 512 above 64 px)", optional=True)
    # --- MI monitors (METHODS.md §6; docs/monitoring.md) -----------------------------------------
    mi_interval: int = _opt(5, "estimate MI on the fixed monitor set before the first step, every N epochs "
                               "and at the last epoch (mi.csv); 0 turns the MI monitor off")
    mi_temperature: float = _opt(0.1, "fixed temperature tau_est of the cosine critic of the MI monitor")
    mi_batch_size: int = _opt(512, "pairs per score matrix of the MI monitor (estimates averaged over batches)")
    # --- speed and scale (docs/performance.md) ---------------------------------------------------
    precision: str = _opt("fp32", "fp32, bf16 or fp16: autocast precision of the networks (objectives stay "
                                  "fp32; fp16 uses a GradScaler and needs CUDA)")
    channels_last: bool = _opt(False, "NHWC memory layout for image models and batches (faster convolutions)")
    compile: bool = _opt(False, "torch.compile the backbones (first steps are slow while it compiles)")
    sync_bn: bool = _opt(False, "multi-process runs: BatchNorm statistics over the global batch (SyncBatchNorm, "
                                "CUDA only); without it each rank normalizes its own share")
    # --- reliability (docs/reliability.md) ------------------------------------------------------
    on_nan: str = _opt("stop", "on a non-finite loss or gradient: stop (report the step and the last good "
                               "checkpoint, exit 3) or skip that optimizer step (counted in metrics.csv)")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_flags(cls, flags: str | list[str]) -> Config:
        """The config of a ``mimax train`` command line (the reference repository's flags; a string is
        split as a shell would). Unset fields stay unset: presets fill them when training starts."""
        import shlex

        argv = shlex.split(flags) if isinstance(flags, str) else list(flags)
        return cls(**explicit_values(argv))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


FIELD_NAMES = [f.name for f in fields(Config)]
# Flags that describe *how* to run, not *what* is trained: they may differ when resuming.
RUNTIME_FIELDS = {"resume", "overwrite", "stop_after", "device", "num_threads", "num_workers", "data_dir",
                  "tensorboard", "output_dir", "precision", "channels_last", "compile", "sync_bn"}
RUNTIME_FIELDS |= {"download"}
RUNTIME_FIELDS |= {"mi_interval"}  # the MI monitor never changes what is trained
RUNTIME_FIELDS |= {"wandb", "wandb_project", "wandb_entity", "wandb_mode"}  # logging only
RUNTIME_FIELDS |= {"on_nan"}  # identical training unless a step is non-finite; resume with skip after a stop

BASE_PRESET: dict[str, Any] = dict(
    epochs=100, warmup_epochs=10, batch_size=256, initial_lr=0.05, weight_decay=1e-4, temperature=0.1,
    feature_dim=512, projection_dim=256, projection_layer=3, optimizer="sgd", architecture="ResNet18",
    model_save_interval=50, model_evaluation_interval=1000,
)

# METHODS.md §7: the controlled Gaussian-mixture experiment.
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "Gaussian": dict(
        architecture="MLP", epochs=50, warmup_epochs=0, batch_size=256, optimizer="adam", initial_lr=1e-3,
        weight_decay=0.0, temperature=0.2, feature_dim=64, projection_dim=3, projection_layer=2,
        model_save_interval=50, model_evaluation_interval=1000,
    ),
}
# Image datasets (issue 6). Epochs and batch size: solo-learn's pretraining configs (CIFAR: 1000 epochs,
# batch 256; ImageNet-100: 400 epochs, batch 256 = 2 x 128); TinyImageNet has no standard protocol, we
# use ImageNet-100's. Image sizes are the datasets' native sizes (224 for ImageNet-style photos).
# FashionMNIST/MNIST/Digits: CPU-scale defaults of ours (the CPU protocol's scripts set their own flags).
_IMAGE = dict(architecture="ResNet18", warmup_epochs=10, batch_size=256, model_save_interval=50,
              model_evaluation_interval=1000, monitor_size=2048)
DATASET_PRESETS.update({
    "CIFAR10": dict(_IMAGE, epochs=1000, image_size=32),
    "CIFAR100": dict(_IMAGE, epochs=1000, image_size=32),
    "TinyImageNet": dict(_IMAGE, epochs=400, image_size=64),
    "ImageNet100": dict(_IMAGE, epochs=400, image_size=224, monitor_size=512),
    "ImageFolder": dict(_IMAGE, epochs=200, image_size=224, monitor_size=512),
    "Folder": dict(_IMAGE, epochs=200, image_size=224, monitor_size=512),
    "FashionMNIST": dict(_IMAGE, epochs=100, image_size=28),
    "MNIST": dict(_IMAGE, epochs=100, image_size=28),
    "Digits": dict(_IMAGE, epochs=50, warmup_epochs=5, batch_size=128, image_size=8, monitor_size=450),
})


def _dataset_names() -> list[str]:
    from mimax.data import DATASETS

    return sorted(DATASETS)


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a user mistake as one line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError("", message)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`Config` field (defaults suppressed so that 'given' is detectable)."""
    parser.add_argument("--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
                        help="YAML file of field: value pairs; flags given on the command line win")
    for f in fields(Config):
        help_text = f.metadata["help"] + ("" if f.default is None else f" (default: {f.default})")
        if f.type in ("bool", bool):
            parser.add_argument(f"--{f.name}", action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        kind = {"int": int, "int | None": int, "float": float, "float | None": float}.get(str(f.type), str)
        parser.add_argument(f"--{f.name}", type=kind, default=argparse.SUPPRESS, help=help_text,
                            metavar=f.name.upper())


def build_parser(prog: str = "mimax train") -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Pretrain a self-supervised encoder by mutual-information maximization.",
        allow_abbrev=False,  # --epoch must not silently mean --epochs (docs/reliability.md)
    )
    add_config_arguments(parser)
    return parser


def load_yaml(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError("--config", f"file not found: {path}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError("--config", f"cannot read {path} ({reason})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("--config", f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must hold a mapping of field: value")
    unknown = sorted(set(data) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError("--config", f"{path}: unknown key(s) {', '.join(unknown)}")
    return data


def _coerce(name: str, value: Any) -> Any:
    """Type-check a value from YAML against the field's annotation (flags are typed by argparse)."""
    ftype = str(next(f.type for f in fields(Config) if f.name == name))
    if value is None:
        if "None" in ftype:
            return None
        raise ConfigError(f"--{name}", "may not be null")
    base = ftype.replace(" | None", "")
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool), "str": isinstance(value, str)}[base]
    if not ok:
        raise ConfigError(f"--{name}", f"expected {base}, got {value!r}")
    return float(value) if base == "float" else value


def explicit_values(argv: list[str] | None) -> dict[str, Any]:
    """Values the user gave: YAML file (if any) overridden by flags. Raises ConfigError on bad input."""
    ns = vars(build_parser().parse_args(argv))
    given: dict[str, Any] = {}
    if "config" in ns:
        given.update({k: _coerce(k, v) for k, v in load_yaml(ns.pop("config")).items()})
    given.update(ns)
    return given


def resolve(given: dict[str, Any]) -> Config:
    """Fill auto fields from the dataset and method presets, then validate."""
    values = dict(given)
    dataset = values.get("dataset", Config.dataset)
    method = values.get("model_name", Config.model_name)
    if dataset not in _dataset_names():
        raise ConfigError("--dataset", f"unknown dataset {dataset!r}; expected one of {', '.join(_dataset_names())}")
    from mimax.methods import METHODS
    from mimax.methods.registry import canonical_name

    cls = METHODS.resolve(method)  # built in, entry point or import path; one-line error otherwise
    values["model_name"] = canonical_name(method)
    preset = {**BASE_PRESET, **DATASET_PRESETS.get(dataset, {}), **cls.preset(dataset)}
    for key, val in preset.items():
        if values.get(key) is None:
            values[key] = val
    cfg = Config(**values)
    validate(cfg)
    return cfg


def config_from_args(argv: list[str] | None) -> Config:
    return resolve(explicit_values(argv))


def _check(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"--{flag}", message)


def validate_images(cfg: Config) -> None:
    """Image-dataset flags (issue 6), and the data's location and layout (DataError before any work)."""
    from mimax.data import IMAGE_DATASETS, check_data

    _check(cfg.resnet_width >= 1, "resnet_width", f"must be >= 1 (got {cfg.resnet_width})")
    _check(cfg.view_recipe in ("auto", "simclr", "byol"), "view_recipe",
           f"expected auto, simclr or byol (got {cfg.view_recipe!r})")
    for name in ("train_subset", "test_subset", "monitor_size", "image_size"):
        value = getattr(cfg, name)
        _check(value is None or value >= 1, name, f"must be >= 1 (got {value})")
    if cfg.dataset not in IMAGE_DATASETS:
        return
    _check(cfg.architecture != "MLP", "architecture",
           f"{cfg.dataset} holds images: use an image backbone (ResNet18, ResNet50, resnet34, timm:<model>, ...)")
    _check(cfg.dataset != "Folder" or cfg.no_labels, "no_labels",
           "--dataset Folder holds unlabelled images: add --no_labels (or use ImageFolder for a class-per-folder tree)")
    _check(cfg.image_size is not None and cfg.image_size >= 8, "image_size",
           f"must be >= 8 for image datasets (got {cfg.image_size})")
    check_data(cfg)
    from mimax.data import DATASET_CHANNELS
    from mimax.nets.backbones import ArchitectureError, check_backbone, parse_architecture

    if parse_architecture(cfg.architecture)[0] != "mimax":  # mimax's ResNets take every image size
        shape = (DATASET_CHANNELS.get(cfg.dataset, 3), cfg.image_size, cfg.image_size)
        try:
            check_backbone(cfg.architecture, shape)
        except ArchitectureError as err:
            raise ConfigError("--architecture", str(err)) from None


def _validate_architecture(cfg: Config) -> None:
    """``--architecture`` names a backbone mimax can build; ``--resnet_width`` only scales mimax's ResNets."""
    from mimax.nets.backbones import ArchitectureError, parse_architecture

    try:
        parse_architecture(cfg.architecture)
    except ArchitectureError as err:
        raise ConfigError("--architecture", str(err)) from None
    _check(cfg.resnet_width == 64 or cfg.architecture in ("ResNet18", "ResNet50"), "resnet_width",
           f"scales mimax's ResNet18/ResNet50 only, not {cfg.architecture} (its width is the model's own)")


def validate(cfg: Config) -> None:
    """Reject impossible settings before any work starts (one ConfigError naming the flag)."""
    for f in fields(cfg):
        if getattr(cfg, f.name) is None and not f.metadata.get("optional") and f.name not in (
                "num_classes", "output_dir", "resume", "stop_after", "num_threads", "data_dir"):
            raise ConfigError(f"--{f.name}", "has no value and no preset fills it")
    _check(cfg.epochs >= 1, "epochs", f"must be >= 1 (got {cfg.epochs})")
    _check(0 <= cfg.warmup_epochs < cfg.epochs, "warmup_epochs",
           f"must be >= 0 and < --epochs={cfg.epochs} (got {cfg.warmup_epochs})")
    _check(cfg.batch_size >= 2, "batch_size", f"must be >= 2: every objective needs a pair (got {cfg.batch_size})")
    _check(cfg.initial_lr > 0, "initial_lr", f"must be > 0 (got {cfg.initial_lr})")
    _check(cfg.weight_decay >= 0, "weight_decay", f"must be >= 0 (got {cfg.weight_decay})")
    _check(cfg.temperature > 0, "temperature", f"must be > 0 (got {cfg.temperature})")
    _check(cfg.num_runs >= 1, "num_runs", f"must be >= 1 (got {cfg.num_runs})")
    _check(1 <= cfg.projection_layer <= 3, "projection_layer", f"must be 1, 2 or 3 (got {cfg.projection_layer})")
    _check(cfg.feature_dim >= 1, "feature_dim", f"must be >= 1 (got {cfg.feature_dim})")
    _check(cfg.projection_dim >= 1, "projection_dim", f"must be >= 1 (got {cfg.projection_dim})")
    _check(cfg.model_save_interval >= 1, "model_save_interval", f"must be >= 1 (got {cfg.model_save_interval})")
    _check(cfg.model_evaluation_interval >= 1, "model_evaluation_interval",
           f"must be >= 1 (got {cfg.model_evaluation_interval})")
    _check(cfg.num_workers >= 0, "num_workers", f"must be >= 0 (got {cfg.num_workers})")
    _check(cfg.optimizer in ("sgd", "lars", "adam", "adamw"), "optimizer",
           f"expected sgd, lars, adam or adamw (got {cfg.optimizer!r})")
    _check(cfg.lars_eta > 0, "lars_eta", f"must be > 0 (got {cfg.lars_eta})")
    _check(0 <= cfg.momentum < 1, "momentum", f"must be in [0, 1) (got {cfg.momentum})")
    _validate_architecture(cfg)
    _check(cfg.stop_after is None or cfg.stop_after >= 1, "stop_after", f"must be >= 1 (got {cfg.stop_after})")
    _check(cfg.num_threads is None or cfg.num_threads >= 1, "num_threads", f"must be >= 1 (got {cfg.num_threads})")
    _check(cfg.device == "auto" or cfg.device.split(":")[0] in ("cpu", "cuda", "mps"), "device",
           f"expected auto, cpu, cuda, cuda:N or mps (got {cfg.device!r})")
    _check(cfg.knn_k >= 1, "knn_k", f"must be >= 1 (got {cfg.knn_k})")
    _check(cfg.knn_temperature > 0, "knn_temperature", f"must be > 0 (got {cfg.knn_temperature})")
    _check(cfg.mi_interval >= 0, "mi_interval", f"must be >= 0 (0 = off; got {cfg.mi_interval})")
    _check(cfg.mi_temperature > 0, "mi_temperature", f"must be > 0 (got {cfg.mi_temperature})")
    _check(cfg.mi_batch_size >= 2, "mi_batch_size",
           f"must be >= 2: the estimators need pairs (got {cfg.mi_batch_size})")
    _check(cfg.precision in ("fp32", "bf16", "fp16"), "precision",
           f"expected fp32, bf16 or fp16 (got {cfg.precision!r})")
    if cfg.precision == "fp16":
        import torch

        on_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
        _check(on_cuda, "precision", "fp16 needs a CUDA device (its GradScaler is CUDA-only); use bf16 on the CPU")
    if cfg.dataset == "Gaussian":
        _check(cfg.architecture == "MLP", "architecture", "the Gaussian mixture holds vectors: use MLP")
        _check(cfg.gm_clusters >= 2, "gm_clusters", f"must be >= 2 (got {cfg.gm_clusters})")
        _check(cfg.gm_dim >= 1, "gm_dim", f"must be >= 1 (got {cfg.gm_dim})")
        _check(cfg.gm_radius > 0, "gm_radius", f"must be > 0 (got {cfg.gm_radius})")
        _check(cfg.gm_sigma > 0, "gm_sigma", f"must be > 0 (got {cfg.gm_sigma})")
        _check(cfg.gm_view_noise >= 0, "gm_view_noise", f"must be >= 0 (got {cfg.gm_view_noise})")
        _check(cfg.gm_train_size >= cfg.batch_size, "gm_train_size",
               f"must be >= --batch_size={cfg.batch_size} (got {cfg.gm_train_size})")
        _check(cfg.gm_test_size >= 1, "gm_test_size", f"must be >= 1 (got {cfg.gm_test_size})")
        _check(cfg.gm_monitor_size >= 2, "gm_monitor_size", f"must be >= 2 (got {cfg.gm_monitor_size})")
        _check(cfg.num_classes is None or cfg.num_classes == cfg.gm_clusters, "num_classes",
               f"the Gaussian mixture has --gm_clusters={cfg.gm_clusters} classes (got {cfg.num_classes})")
    validate_images(cfg)
    _check(cfg.mlp_hidden_dim >= 1, "mlp_hidden_dim", f"must be >= 1 (got {cfg.mlp_hidden_dim})")
    # methods (issue #3)
    _check(cfg.target_update in (None, "alternate", "ema", "copy"), "target_update",
           f"expected alternate, ema or copy (got {cfg.target_update!r})")
    _check(cfg.target_init in (None, "independent", "copy"), "target_init",
           f"expected independent or copy (got {cfg.target_init!r})")
    _check(cfg.alternation_period >= 1, "alternation_period", f"must be >= 1 (got {cfg.alternation_period})")
    _check(cfg.ema_momentum is None or 0 <= cfg.ema_momentum < 1, "ema_momentum",
           f"must be in [0, 1) (got {cfg.ema_momentum})")
    _check(cfg.predictor_dim is None or cfg.predictor_dim >= 1, "predictor_dim",
           f"must be >= 1 (got {cfg.predictor_dim})")
    _check(cfg.barlow_lambda is None or cfg.barlow_lambda >= 0, "barlow_lambda",
           f"must be >= 0 (got {cfg.barlow_lambda})")
    _check(cfg.barlow_scale is None or cfg.barlow_scale > 0, "barlow_scale", f"must be > 0 (got {cfg.barlow_scale})")
    for coeff in ("vicreg_sim_coeff", "vicreg_std_coeff", "vicreg_cov_coeff"):
        _check(getattr(cfg, coeff) >= 0, coeff, f"must be >= 0 (got {getattr(cfg, coeff)})")
    _validate_reliability(cfg)
    from mimax.methods import METHODS

    METHODS.resolve(cfg.model_name).validate(cfg)


def _validate_reliability(cfg: Config) -> None:
    """Non-finite float flags (``nan``, ``inf`` parse as floats) and ``--on_nan``."""
    import math

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        _check(not isinstance(value, float) or math.isfinite(value), f.name, f"must be a finite number (got {value})")
    _check(cfg.on_nan in ("stop", "skip"), "on_nan", f"expected stop or skip (got {cfg.on_nan!r})")
    _check(cfg.wandb_mode in (None, "online", "offline", "disabled"), "wandb_mode",
           f"expected online, offline or disabled (got {cfg.wandb_mode!r})")
    if cfg.wandb:
        import importlib.util

        _check(importlib.util.find_spec("wandb") is not None, "wandb",
               "needs the wandb package: pip install 'mimax[wandb]'")
