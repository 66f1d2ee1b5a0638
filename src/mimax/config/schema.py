"""The schema of a training job: one typed field per flag, with its help text.

Every field is a flag of the same name (``--model_name``, ``--initial_lr``, ...), which keeps the
reference repository's command line valid unchanged. Fields whose default is ``None`` are "auto": a
preset fills them (:mod:`mimax.config.presets`); method options are ``None`` here and take the chosen
method's defaults (its ``Options`` dataclass), other methods' options stay ``None``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    # --- the reference repository's flags -------------------------------------------------------
    model_name: str = _opt("SDMI", "method to train (see `mimax methods`)", group="method")
    dataset: str = _opt("Gaussian", "dataset (Gaussian = the embedded synthetic mixture)", group="data")
    architecture: str | None = _opt(None, "backbone: MLP (vector data), ResNet18, ResNet50, any torchvision "
                                          "classification model (resnet34, convnext_tiny, vit_b_16, ...) or "
                                          "timm:<model> (timm extra); auto by dataset", group="model")
    num_classes: int | None = _opt(None, "number of classes; checked against the dataset when given", group="data")
    epochs: int | None = _opt(None, "pretraining epochs", group="optimization")
    warmup_epochs: float | None = _opt(None, "epochs of linear LR warmup (per step) before cosine decay; may be "
                                             "fractional (0.25 = a quarter of an epoch's steps)",
                                       group="optimization")
    batch_size: int | None = _opt(None, "images (or vectors) per step; each gives two views", group="optimization")
    initial_lr: float | None = _opt(None, "base learning rate (after warmup, before cosine decay)",
                                    group="optimization")
    weight_decay: float | None = _opt(None, "weight decay (L2; not applied to biases/norms with LARS)",
                                      group="optimization")
    temperature: float | None = _opt(None, "critic temperature tau of contrastive/DV objectives (SDMI, JMI, "
                                           "SimCLR, MoCoV3)", method_option=True, group="method")
    num_runs: int = _opt(1, "independent runs with seeds seed..seed+num_runs-1; results are mean ± std", group="output")
    augmentation: bool | None = _opt(None, "strong augmentation recipe (Gaussian: add random scaling to view noise); "
                                           "auto: on for the datasets with a documented recipe (CIFAR10/100, "
                                           "TinyImageNet, ImageNet100, FashionMNIST), --no_augmentation turns it off",
                                     negatable=True, group="data")
    feature_dim: int | None = _opt(None, "hidden width of the projector MLP", group="model")
    projection_dim: int | None = _opt(None, "output width of the projector (the embedding dimension D)", group="model")
    projection_layer: int | None = _opt(None, "number of linear layers in the projector (1..3)", group="model")
    model_save_interval: int | None = _opt(None, "save a checkpoint every N epochs (and always at the end)",
                                           group="output")
    model_evaluation_interval: int | None = _opt(
        None, "linear-probe every N epochs (and always at the end)"
    , group="evaluation")
    num_workers: int = _opt(2, "DataLoader worker processes (image datasets)", group="speed")
    # --- run management ------------------------------------------------------------------------
    output_dir: str | None = _opt(None, "experiment directory (default: runs/<method>_<dataset>_<time>)",
                                  group="output")
    seed: int = _opt(0, "base random seed", group="output")
    resume: str | None = _opt(None, "resume from an experiment dir, a seed_<k> dir or a checkpoint file; 'auto': "
                                    "resume --output_dir if it holds a run, else start it there (requeued jobs)",
                              group="output")
    overwrite: bool = _opt(False, "allow writing into an existing non-empty output_dir", group="output")
    stop_after: int | None = _opt(None, "stop (resumably) after this many epochs in this invocation, counted over "
                                        "all its seeds (not kept for a later --resume)", group="output")
    save_every_minutes: float | None = _opt(None, "also checkpoint every M minutes of training, mid-epoch if need "
                                                  "be (for long epochs and schedulers that kill without warning)",
                                            group="output")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N or mps", group="speed")
    num_threads: int | None = _opt(None, "torch CPU threads (default: torch's choice)", group="speed")
    tensorboard: bool = _opt(False, "also write TensorBoard event files (needs the tensorboard extra)",
                             group="monitoring")
    wandb: bool = _opt(False, "also log to Weights & Biases, one W&B run per seed, continued by --resume (needs "
                              "the wandb extra)", group="monitoring")
    wandb_project: str = _opt("mimax", "W&B project", group="monitoring")
    wandb_entity: str | None = _opt(None, "W&B entity (user or team; default: W&B's own setting)", optional=True,
                                    group="monitoring")
    wandb_mode: str | None = _opt(None, "W&B mode: online, offline (no network; `wandb sync` uploads later) or "
                                        "disabled (default: W&B's own setting, e.g. WANDB_MODE)", optional=True,
                                  group="monitoring")
    data_dir: str | None = _opt(None, "dataset location on disk (image datasets)", group="data")
    # --- optimization ----------------------------------------------------------------------------
    optimizer: str | None = _opt(None, "sgd, lars, adam or adamw", group="optimization")
    momentum: float = _opt(0.9, "SGD/LARS momentum", group="optimization")
    lars_eta: float = _opt(0.02, "LARS trust coefficient eta (solo-learn's default)", group="optimization")
    # --- method options ------------------------------------------------------------------------
    no_marginal: bool | None = _opt(None, "SDMI, JMI: drop the marginal (negative) term of the DV objective",
                                    method_option=True, group="method")
    # --- method options: read by the methods that declare them (`mimax methods`), None = the method's ---
    target_update: str | None = _opt(None, "SDMI: how the target g_ξ follows f_θ: alternate (own gradient steps), "
                                           "ema or copy", method_option=True, group="method")
    target_init: str | None = _opt(None, "SDMI, BYOL, MoCoV3: g_ξ initialized independently of f_θ or as a copy",
                                   method_option=True, group="method")
    alternation_period: int | None = _opt(None, "SDMI alternate: steps each side takes before switching θ <-> ξ",
                                          method_option=True, group="method")
    predictor: bool | None = _opt(None, "SDMI: add an MLP predictor q on the online side, "
                                        "S_ij = cos(q(u_i), v_j)/tau", method_option=True, group="method")
    projector_bn: bool | None = _opt(None, "SDMI: end the projectors of f_θ and g_ξ in BatchNorm (centered "
                                           "embeddings, as MoCo-v3's)", method_option=True, group="method")
    ema_momentum: float | None = _opt(None, "EMA target (BYOL, MoCoV3, SDMI ema): base momentum m_0, raised to 1 "
                                            "on a cosine over the run", method_option=True, group="method")
    ema_min_time_constants: float | None = _opt(
        None, "EMA target: the run spans at least this many target time constants 1/(1-m); a run too short "
              "for m_0 lowers it (not below 0.9; 0 keeps m_0; docs/methods.md §3)", method_option=True, group="method")
    predictor_dim: int | None = _opt(None, "predictor hidden width h (BYOL, MoCoV3, SimSiam, SDMI --predictor)",
                                     method_option=True, group="method")
    barlow_lambda: float | None = _opt(None, "Barlow Twins: weight of the off-diagonal (redundancy) term",
                                       method_option=True, group="method")
    barlow_scale: float | None = _opt(None, "Barlow Twins: overall loss scale", method_option=True, group="method")
    vicreg_sim_coeff: float | None = _opt(None, "VICReg: weight of the invariance (MSE) term", method_option=True,
                                          group="method")
    vicreg_std_coeff: float | None = _opt(None, "VICReg: weight of the variance (std hinge) term", method_option=True,
                                          group="method")
    vicreg_cov_coeff: float | None = _opt(None, "VICReg: weight of the covariance term", method_option=True,
                                          group="method")
    # --- Gaussian mixture (docs/methods.md §7) ------------------------------------------------------------
    gm_clusters: int = _opt(5, "Gaussian mixture: number of clusters K", group="synthetic data")
    gm_dim: int = _opt(16, "Gaussian mixture: input dimension d", group="synthetic data")
    gm_radius: float = _opt(3.0, "Gaussian mixture: radius of the sphere the means are drawn on",
                            group="synthetic data")
    gm_sigma: float = _opt(1.0, "Gaussian mixture: within-cluster standard deviation", group="synthetic data")
    gm_view_noise: float = _opt(0.5, "Gaussian mixture: std of the independent per-view noise", group="synthetic data")
    gm_train_size: int = _opt(5000, "Gaussian mixture: training points", group="synthetic data")
    gm_test_size: int = _opt(1000, "Gaussian mixture: test points", group="synthetic data")
    gm_monitor_size: int = _opt(2048, "Gaussian mixture: held-out monitor points", group="synthetic data")
    gm_data_seed: int = _opt(0, "Gaussian mixture: seed fixing the mixture (means and samples)", group="synthetic data")
    mlp_hidden_dim: int = _opt(64, "MLP backbone width (input -> h -> h)", group="model")
    # --- evaluation ----------------------------------------------------------------------------
    knn_k: int = _opt(200, "k of the kNN evaluation", group="evaluation")
    knn_temperature: float = _opt(0.07, "temperature of the kNN vote weights exp(cos/T)", group="evaluation")
    # --- image datasets, augmentation and ResNet width (docs/data.md) ----------------------
    download: bool = _opt(False, "fetch the dataset into --data_dir with torchvision's downloader "
                                 "(CIFAR10, CIFAR100, MNIST, FashionMNIST; needs internet)", group="data")
    class_list: str | None = _opt(None, "ImageNet100: file of WordNet ids, one per line, selecting the classes "
                                        "(default: CMC's 100-class list shipped with mimax)", optional=True,
                                  group="data")
    no_labels: bool = _opt(False, "use the images without labels: pretraining only, linear probe and kNN "
                                  "are skipped (implied by --dataset Folder)", group="data")
    gpu_augment: bool = _opt(False, "batched augmentation on the training device (CPU too), independent "
                                    "random parameters per image, instead of per-image torchvision "
                                    "transforms in DataLoader workers", group="speed")
    resnet_width: int | None = _opt(None, "base width of mimax's ResNet18/50 (channels of its first stage; "
                                          "auto: 64, 16 on FashionMNIST, the CPU protocol)", group="model")
    image_size: int | None = _opt(None, "side of the square crops trained and evaluated on (auto: the "
                                        "dataset's native size; 224 for ImageNet100; ImageFolder/Folder: the "
                                        "images' median shorter side, at most 224)", optional=True,
                                  group="data")
    crop_min_scale: float | None = _opt(None, "smallest area fraction of the random resized crop, in (0, 1] "
                                              "(auto: 0.08 as in SimCLR/BYOL; 0.5 below 16 px; 0.25 on FashionMNIST, "
                                              "the CPU protocol)", optional=True, group="data")
    view_recipe: str | None = _opt(None, "augmentation family used with --augmentation: simclr (symmetric), "
                                         "byol (asymmetric), auto (the method's choice)", group="data")
    train_subset: int | None = _opt(None, "use a fixed subset of N training images (the same for every seed)",
                                    optional=True, group="data")
    test_subset: int | None = _opt(None, "use a fixed subset of N test images (the same for every seed)",
                                   optional=True, group="data")
    monitor_size: int | None = _opt(None, "image datasets: number of fixed held-out view pairs for the MI "
                                          "monitors (auto: 2048; 512 above 64 px)", optional=True, group="monitoring")
    # --- MI monitors (docs/methods.md §6; docs/monitoring.md) -----------------------------------------
    mi_interval: int = _opt(5, "estimate MI on the fixed monitor set before the first step, every N epochs "
                               "and at the last epoch (mi.csv); 0 turns the MI monitor off", group="monitoring")
    mi_temperature: float = _opt(0.1, "fixed temperature tau_est of the cosine critic of the MI monitor",
                                 group="monitoring")
    mi_batch_size: int = _opt(512, "pairs per score matrix of the MI monitor (estimates averaged over batches)",
                              group="monitoring")
    mi_critic_interval: int = _opt(0, "trained-critic MI estimate (held-out InfoNCE with a 95%% interval) of the "
                                      "embedding and backbone pairs at epoch 0, the last epoch and every N epochs "
                                      "(0: first and last only; -1: never); needs the MI monitor on",
                                   group="monitoring")
    stop_on_collapse: int = _opt(0, "end the run (exit code 4, checkpoint kept, resumable) once the collapse "
                                    "criterion (normalized-embedding std < 0.1 or effective rank < 1.2) has held "
                                    "for N consecutive epochs; 0 = off", group="monitoring")
    # --- speed and scale (docs/performance.md) ---------------------------------------------------
    precision: str = _opt("auto", "auto, fp32, bf16 or fp16: autocast precision of the networks (objectives stay "
                                  "fp32; fp16 uses a GradScaler and needs CUDA). auto: bf16 where the device "
                                  "computes it natively (AVX512-BF16/AMX CPUs, bf16 GPUs), else fp32; the choice is "
                                  "printed and recorded in config.json", group="speed")
    channels_last: bool = _opt(False, "NHWC memory layout for image models and batches (faster convolutions)",
                               group="speed")
    compile: bool = _opt(False, "torch.compile the backbones (first steps are slow while it compiles)", group="speed")
    sync_bn: bool = _opt(False, "multi-process runs: BatchNorm statistics over the global batch (SyncBatchNorm, "
                                "CUDA only); without it each rank normalizes its own share", group="speed")
    # --- reliability (docs/reliability.md) ------------------------------------------------------
    on_nan: str = _opt("stop", "on a non-finite loss or gradient: stop (report the step and the last good "
                               "checkpoint, exit 3) or skip that optimizer step (counted in metrics.csv)",
                       group="optimization")

    # --- recorded, not a flag ---------------------------------------------------------------------
    method_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "options of a user method that are not fields here (its own flags; docs/extending.md)", "flag": False})
    unused: list[str] = field(default_factory=list, metadata={
        "help": "reference-repository flags given that the method does not read", "flag": False})

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


FIELD_NAMES = [f.name for f in fields(Config)]
FLAG_FIELDS = [f for f in fields(Config) if f.metadata.get("flag", True)]
METHOD_OPTION_FIELDS = frozenset(f.name for f in fields(Config) if f.metadata.get("method_option"))
# The reference repository's command line (README): kept valid for every method; a method-specific one
# the chosen method does not read is accepted with a warning and listed in config.json's "unused".
REFERENCE_FLAGS = ("model_name", "dataset", "architecture", "num_classes", "epochs", "warmup_epochs", "batch_size",
                   "initial_lr", "weight_decay", "temperature", "num_runs", "augmentation", "feature_dim",
                   "projection_dim", "projection_layer", "model_save_interval", "model_evaluation_interval",
                   "num_workers")
# Flags that describe *how* to run, not *what* is trained: they may differ when resuming, and the MI
# monitor and --on_nan never change what is trained (unless a step is non-finite).
RUNTIME_FIELDS = frozenset({"resume", "overwrite", "stop_after", "device", "num_threads", "num_workers", "data_dir",
                            "tensorboard", "output_dir", "precision", "channels_last", "compile", "sync_bn",
                            "download", "mi_interval", "on_nan", "unused", "save_every_minutes", "wandb",
                            "wandb_project", "wandb_entity", "wandb_mode", "mi_critic_interval", "stop_on_collapse"})
# Fields that may stay None after resolution.
OPTIONAL_FIELDS = frozenset({"num_classes", "output_dir", "resume", "stop_after", "num_threads", "data_dir",
                             "save_every_minutes"}) | {
    f.name for f in fields(Config) if f.metadata.get("optional") or f.metadata.get("method_option")}


def whole_warmup(value: Any) -> Any:
    """``--warmup_epochs`` as an int when it is a whole number (1.0 -> 1), else unchanged: a run's identity
    hashes its config, so a flag, a YAML value or a saved ``config.json`` read back must give the same value
    as the preset's int."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
