"""Validation of a resolved :class:`Config`, once, before any work: every impossible setting is one
:class:`ConfigError` naming the flag; the data's location and layout are checked by the data layer
(:class:`DataError`); the chosen method validates its own options.

The number of processes is read from the environment ``torchrun`` sets (``WORLD_SIZE``), so a global
batch that does not split over the processes is refused here, before any directory is created.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
from dataclasses import fields
from pathlib import Path

import torch

from mimax.config.schema import OPTIONAL_FIELDS, Config
from mimax.data import DATASET_CHANNELS, IMAGE_DATASETS, check_data
from mimax.errors import ConfigError
from mimax.methods import METHODS
from mimax.nets.backbones import WIDTH_SCALED, ArchitectureError, check_backbone, parse_architecture
from mimax.runtime.device import DEVICE_RE, memory_bytes, resolve_device
from mimax.runtime.distributed import launched_world_size


def _check(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"--{flag}", message)


def validate(cfg: Config) -> None:
    """Reject impossible settings before any work starts (one ConfigError naming the flag)."""
    for f in fields(cfg):
        if getattr(cfg, f.name) is None and f.name not in OPTIONAL_FIELDS:
            raise ConfigError(f"--{f.name}", "has no value and no preset fills it")
    method = METHODS.resolve(cfg.model_name)  # built in, entry point or import path; one line otherwise
    _validate_training(cfg)
    _validate_runtime(cfg)
    if cfg.dataset == "Gaussian":
        _validate_gaussian(cfg)
    _validate_images(cfg)
    _check(cfg.mlp_hidden_dim >= 1, "mlp_hidden_dim", f"must be >= 1 (got {cfg.mlp_hidden_dim})")
    _validate_finite(cfg)
    _validate_machine(cfg)
    options = method.Options.from_config(cfg)
    options.validate()
    method.check_options(options)
    validate_launch(cfg)


def _validate_training(cfg: Config) -> None:
    _check(cfg.epochs >= 1, "epochs", f"must be >= 1 (got {cfg.epochs})")
    _check(0 <= cfg.warmup_epochs < cfg.epochs, "warmup_epochs",
           f"must be >= 0 and < --epochs={cfg.epochs} (got {cfg.warmup_epochs})")
    _check(cfg.crop_min_scale is None or 0 < cfg.crop_min_scale <= 1, "crop_min_scale",
           f"must be in (0, 1] (got {cfg.crop_min_scale})")
    _check(cfg.batch_size >= 2, "batch_size", f"must be >= 2: every objective needs a pair (got {cfg.batch_size})")
    _check(cfg.initial_lr > 0, "initial_lr", f"must be > 0 (got {cfg.initial_lr})")
    _check(cfg.weight_decay >= 0, "weight_decay", f"must be >= 0 (got {cfg.weight_decay})")
    _check(cfg.temperature is None or cfg.temperature > 0, "temperature", f"must be > 0 (got {cfg.temperature})")
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
    _check(cfg.knn_k >= 1, "knn_k", f"must be >= 1 (got {cfg.knn_k})")
    _check(cfg.knn_temperature > 0, "knn_temperature", f"must be > 0 (got {cfg.knn_temperature})")
    _check(cfg.mi_interval >= 0, "mi_interval", f"must be >= 0 (0 = off; got {cfg.mi_interval})")
    _check(cfg.mi_temperature > 0, "mi_temperature", f"must be > 0 (got {cfg.mi_temperature})")
    _check(cfg.mi_batch_size >= 2, "mi_batch_size",
           f"must be >= 2: the estimators need pairs (got {cfg.mi_batch_size})")
    _check(cfg.mi_critic_interval >= -1, "mi_critic_interval",
           f"must be >= -1 (-1 = never, 0 = first and last epoch; got {cfg.mi_critic_interval})")
    _check(cfg.stop_on_collapse >= 0, "stop_on_collapse", f"must be >= 0 (0 = off; got {cfg.stop_on_collapse})")


def _validate_runtime(cfg: Config) -> None:
    """Flags about where and how the job runs: stop, threads, device, precision, processes."""
    _check(cfg.stop_after is None or cfg.stop_after >= 1, "stop_after", f"must be >= 1 (got {cfg.stop_after})")
    _check(cfg.num_threads is None or cfg.num_threads >= 1, "num_threads", f"must be >= 1 (got {cfg.num_threads})")
    _check(DEVICE_RE.fullmatch(cfg.device) is not None, "device",
           f"expected auto, cpu, cuda, cuda:N or mps (got {cfg.device!r})")
    _check(cfg.precision in ("auto", "fp32", "bf16", "fp16"), "precision",
           f"expected auto, fp32, bf16 or fp16 (got {cfg.precision!r})")
    if cfg.precision == "fp16":
        on_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
        _check(on_cuda, "precision", "fp16 needs a CUDA device (its GradScaler is CUDA-only); use bf16 on the CPU")
    _check(cfg.on_nan in ("stop", "skip"), "on_nan", f"expected stop or skip (got {cfg.on_nan!r})")
    _check(cfg.wandb_mode in (None, "online", "offline", "disabled"), "wandb_mode",
           f"expected online, offline or disabled (got {cfg.wandb_mode!r})")


def validate_launch(cfg: Config) -> None:
    """What depends on this machine and this launch, checked before any work of this invocation (also
    when resuming): the device exists, the global batch splits over the ``torchrun`` processes,
    ``--sync_bn`` has GPUs, ``--tensorboard`` is installed."""
    device = resolve_device(cfg.device)
    world = launched_world_size()
    _check(cfg.batch_size % world == 0, "batch_size",
           f"the global batch {cfg.batch_size} must be divisible by the number of processes ({world})")
    _check(not (cfg.sync_bn and world > 1 and device.type != "cuda"), "sync_bn",
           "torch's SyncBatchNorm needs CUDA devices; on CPU ranks each rank's BatchNorm normalizes its own "
           "share of the batch (drop --sync_bn)")
    # torch 2.14's oneDNN AVX2 kernels corrupt the heap in the weight gradient of a channels-last 1x1 stride-2
    # convolution with 2-6 input channels (measured on an AMD EPYC: "corrupted double-linked list", SIGABRT);
    # a mimax ResNet's first downsampling convolution has resnet_width input channels.
    _check(not (cfg.channels_last and device.type == "cpu" and cfg.resnet_width < 8
                and cfg.architecture in WIDTH_SCALED and torch.backends.cpu.get_cpu_capability() == "AVX2"),
           "channels_last", f"on this CPU (AVX2 kernels) torch's channels-last 1x1 strided convolution corrupts memory "
           f"with fewer than 8 input channels (--resnet_width {cfg.resnet_width}); use --resnet_width 8 or more, or "
           "leave --channels_last out (it speeds up GPUs and AVX-512 CPUs, not this one)")
    if cfg.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("--tensorboard",
                              "needs the tensorboard package: pip install 'mimax[tensorboard]'") from None
    _check(not cfg.wandb or importlib.util.find_spec("wandb") is not None, "wandb",
           "needs the wandb package: pip install 'mimax[wandb]'")


def _validate_gaussian(cfg: Config) -> None:
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


def _validate_images(cfg: Config) -> None:
    """Image-dataset flags, and the data's location and layout (a DataError before any work)."""
    _check(cfg.resnet_width >= 1, "resnet_width", f"must be >= 1 (got {cfg.resnet_width})")
    _check(cfg.view_recipe in ("simclr", "byol"), "view_recipe",
           f"expected auto, simclr or byol (got {cfg.view_recipe!r})")
    for name in ("train_subset", "image_size"):
        value = getattr(cfg, name)
        _check(value is None or value >= 1, name, f"must be >= 1 (got {value})")
    for name in ("test_subset", "monitor_size"):  # the MI monitor's set is drawn from the test split
        value = getattr(cfg, name)
        _check(value is None or value >= 2, name, f"must be >= 2: the MI monitor and the evaluation need pairs "
                                                  f"(got {value})")
    if cfg.dataset not in IMAGE_DATASETS:
        return
    _check(cfg.architecture != "MLP", "architecture",
           f"{cfg.dataset} holds images: use an image backbone (ResNet18, ResNet50, resnet34, timm:<model>, ...)")
    _check(cfg.dataset != "Folder" or cfg.no_labels, "no_labels",
           "--dataset Folder holds unlabelled images: add --no_labels (or use ImageFolder for a class-per-folder tree)")
    check_data(cfg)
    _check(cfg.image_size is not None and cfg.image_size >= 8, "image_size",
           f"must be >= 8 for image datasets (got {cfg.image_size})")
    if parse_architecture(cfg.architecture)[0] != "mimax":  # mimax's ResNets take every image size
        shape = (DATASET_CHANNELS.get(cfg.dataset, 3), cfg.image_size, cfg.image_size)
        try:
            check_backbone(cfg.architecture, shape)
        except ArchitectureError as err:
            raise ConfigError("--architecture", str(err)) from None


def _validate_architecture(cfg: Config) -> None:
    """``--architecture`` names a backbone mimax can build; ``--resnet_width`` only scales mimax's ResNets."""
    try:
        parse_architecture(cfg.architecture)
    except ArchitectureError as err:
        raise ConfigError("--architecture", str(err)) from None
    _check(cfg.resnet_width == 64 or cfg.architecture in WIDTH_SCALED, "resnet_width",
           f"scales mimax's ResNet18/ResNet50 only, not {cfg.architecture} (its width is the model's own)")


def _validate_finite(cfg: Config) -> None:
    """Non-finite float flags (``nan``, ``inf`` parse as floats)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        _check(not isinstance(value, float) or math.isfinite(value), f.name, f"must be a finite number (got {value})")


SEED_LIMIT = 2**32  # numpy's seeds are 32-bit; torch's 64-bit
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the machine's count where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def process_limit() -> int | None:
    """The soft limit on this user's processes (``ulimit -u``), or None when unlimited or unknown."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _gaussian_memory(cfg: Config) -> dict[str, int]:
    """Bytes a Gaussian-mixture run needs at least, by the flag that drives them: the data (train, test,
    monitor points and their views, float32), the MLP encoders (two, with gradients and two optimizer
    moments each) and a batch's activations and score matrix."""
    points = cfg.gm_train_size + cfg.gm_test_size + 3 * cfg.gm_monitor_size
    h, f, d = cfg.mlp_hidden_dim, cfg.feature_dim, cfg.gm_dim
    params = d * h + h * h + h * f + f * f + f * cfg.projection_dim
    return {"gm_train_size": 4 * 2 * points * d, "mlp_hidden_dim": 4 * 4 * 2 * params,
            "batch_size": 4 * 4 * cfg.batch_size * max(h, f, d) + 4 * cfg.batch_size ** 2}


def _check_path(flag: str, value: str | None) -> None:
    """A path the OS cannot take (a component over NAME_MAX bytes, a NUL) is refused before use."""
    if value is None:
        return
    _check("\0" not in value, flag, "must not contain a NUL character")
    name_max = 255
    with contextlib.suppress(OSError, ValueError):
        name_max = os.pathconf("/", "PC_NAME_MAX")
    for part in Path(value).parts:
        size = len(os.fsencode(part))
        _check(size <= name_max, flag, f"path component of {size} bytes is longer than this file system allows "
                                       f"({name_max}): {part[:40]}...")


def _validate_machine(cfg: Config) -> None:
    """Values this machine cannot run: seeds outside numpy's range, float32 overflow, more threads or
    processes than it can start, sizes beyond its memory, paths its file system refuses."""
    _check(cfg.seed >= 0 and cfg.seed + cfg.num_runs - 1 < SEED_LIMIT, "seed",
           f"must be in [0, {SEED_LIMIT - cfg.num_runs}] so that every seed of --num_runs={cfg.num_runs} is a "
           f"32-bit seed (got {cfg.seed})")
    _check(0 <= cfg.gm_data_seed < 2**63, "gm_data_seed", f"must be in [0, 2^63) (got {cfg.gm_data_seed})")
    _check(cfg.initial_lr <= FLOAT32_MAX, "initial_lr",
           f"must be <= {FLOAT32_MAX:.4g}: the weights are float32 (got {cfg.initial_lr})")
    _check(cfg.weight_decay <= FLOAT32_MAX, "weight_decay", f"must be <= {FLOAT32_MAX:.4g} (got {cfg.weight_decay})")
    _check(cfg.save_every_minutes is None or cfg.save_every_minutes > 0, "save_every_minutes",
           f"must be > 0 (got {cfg.save_every_minutes})")
    cpus = usable_cpus()
    most = max(64, 4 * cpus)  # beyond this torch's thread pool only adds stacks (and can fail to start)
    _check(cfg.num_threads is None or cfg.num_threads <= most, "num_threads",
           f"must be <= {most} (this machine has {cpus} CPUs; got {cfg.num_threads})")
    procs = process_limit()
    _check(procs is None or cfg.num_workers < procs, "num_workers",
           f"must be < {procs}, this account's process limit (ulimit -u; got {cfg.num_workers})")
    if cfg.dataset == "Gaussian":
        need, have = _gaussian_memory(cfg), memory_bytes()
        flag = max(need, key=need.get)
        _check(sum(need.values()) <= have, flag,
               f"this run would need at least {sum(need.values()) / 2**30:.3g} GiB, more than the "
               f"{have / 2**30:.3g} GiB of memory of this machine (got {getattr(cfg, flag)})")
    for flag in ("output_dir", "data_dir", "class_list"):
        _check_path(flag, getattr(cfg, flag))


def notes(cfg: Config) -> list[str]:
    """Warnings and notes to print before training starts (not errors)."""
    out = [f"mimax: warning: --{name} is not read by {cfg.model_name} (accepted for the reference command "
           "line; listed as unused in config.json)" for name in cfg.unused]
    if cfg.no_labels and cfg.dataset in IMAGE_DATASETS:
        out.append(f"note: --no_labels: {cfg.dataset} is used without labels; pretraining only, the linear probe "
                   "and kNN evaluation are skipped")
    return out
