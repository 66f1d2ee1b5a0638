"""A method's own hyperparameters: a frozen dataclass per method, with its presets per dataset, the
source of every default and its validation.

The user-facing configuration (:class:`mimax.config.Config`) keeps every flag of the command line; a
method reads only the fields its options class declares (:meth:`MethodOptions.from_config`), so a flag
another method reads is refused for it (see :func:`mimax.config.presets.method_values`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from mimax.errors import ConfigError


def option(default: Any, help: str, source: str) -> Any:
    """A method option: its default (the method paper's, unless ``source`` says otherwise), a help line
    and the source of the default."""
    return dataclasses.field(default=default, metadata={"help": help, "source": source})


@dataclass(frozen=True)
class MethodOptions:
    """Base class of every method's options. Subclasses add fields with :func:`option` and may override
    :meth:`presets` (values per dataset, including the projector's widths), :meth:`check` (validation)
    and :meth:`unread` (fields not read under the chosen values)."""

    method: ClassVar[str] = ""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        """Values for ``dataset`` that differ from the defaults (option fields and the projector's
        ``feature_dim``/``projection_dim``/``projection_layer``), with the sources in comments."""
        return {}

    @classmethod
    def preset_sources(cls, dataset: str) -> str:
        """Where :meth:`presets` of ``dataset`` come from (one phrase, for ``mimax methods``)."""
        return ""

    @classmethod
    def from_config(cls, cfg: Any) -> MethodOptions:
        """The options read from a resolved config (any object with the fields as attributes; a user
        method's options that are not config fields are in ``cfg.method_options``); unset (``None``)
        fields take the defaults."""
        extra = getattr(cfg, "method_options", None) or {}
        values = {name: extra[name] if name in extra else getattr(cfg, name, None) for name in cls.names()}
        return cls(**{name: value for name, value in values.items() if value is not None})

    def unread(self) -> dict[str, str]:
        """Options that these values make irrelevant, with the reason (e.g. SDMI's ``ema_momentum``:
        "without --target_update ema"); given explicitly, they are refused."""
        return {}

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the flag for an impossible value."""

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{f.name}", f"must be a finite number (got {value})")
        self.check()


CIFAR_FAMILY = ("CIFAR10", "CIFAR100", "TinyImageNet")  # solo-learn's CIFAR recipes (TinyImageNet: ours)
DOCUMENTED = (*CIFAR_FAMILY, "ImageNet100", "FashionMNIST")  # the datasets with a recipe per method
HEAD_KEYS = ("feature_dim", "projection_dim", "projection_layer")


def recipe(dataset: str, cifar: dict[str, Any], imagenet100: dict[str, Any], fashion: dict[str, Any],
           image_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A method's training recipe for ``dataset`` (scripts/README.md gives every source): solo-learn's CIFAR
    recipe on CIFAR10/100 and TinyImageNet, its ImageNet-100 recipe (with a ResNet-50), and the CPU
    protocol on Fashion-MNIST. Other image datasets take the CIFAR recipe's projector shape (and
    ``image_extra``, method options meant for images) and keep the dataset's optimizer settings."""
    if dataset == "Gaussian":
        return {}
    if dataset in CIFAR_FAMILY:
        return dict(cifar)
    if dataset == "ImageNet100":
        return dict(imagenet100)
    if dataset == "FashionMNIST":
        return dict(fashion)
    return {**{k: cifar[k] for k in HEAD_KEYS if k in cifar}, **(image_extra or {})}


# The paper's reference command (its repository's README), the recipe of SDMI and JMI: SGD, base LR 0.05
# at batch 64, weight decay 1e-4, projector 512 -> 256 with 3 layers (tau = 0.1 is the option's default).
# On CIFAR/TinyImageNet with a ResNet-18 and the dataset's epochs; on ImageNet-100 verbatim (ResNet-50, 800
# epochs); on Fashion-MNIST the CPU protocol, its LR scaled linearly to batch 128 and the projector 512 -> 128.
_REFERENCE = dict(batch_size=64, optimizer="sgd", initial_lr=0.05, weight_decay=1e-4, feature_dim=512,
                  projection_dim=256, projection_layer=3)
REFERENCE_RECIPE = dict(cifar=_REFERENCE, imagenet100=dict(_REFERENCE, architecture="ResNet50", epochs=800),
                        fashion=dict(optimizer="sgd", initial_lr=0.1, weight_decay=1e-4, feature_dim=512,
                                     projection_dim=128, projection_layer=3))


def require(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"--{flag}", message)


@dataclass(frozen=True)
class TemperatureOptions(MethodOptions):
    """Methods whose critic scores cos(u, v) / tau."""

    temperature: float = option(0.1, "critic temperature tau", "the reference repository's example command")

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        return {"temperature": 0.2} if dataset == "Gaussian" else {}  # the paper's controlled experiment

    def check(self) -> None:
        require(self.temperature > 0, "temperature", f"must be > 0 (got {self.temperature})")


EMA_MIN_TIME_CONSTANTS = 50.0  # BYOL's ablation: m_0 = 0.999 over its 300 epochs (~47) still trained well
EMA_FLOOR = 0.9  # the lowest m_0 the short-run rule lowers to: a 10-step time constant, BYOL's fastest good one
EMA_MIN_TIME_CONSTANTS_HELP = ("the EMA target spans at least this many of its time constants 1/(1-m) over the "
                               f"run: a run too short for m_0 lowers it (not below {EMA_FLOOR:g}); 0 keeps m_0")
EMA_MIN_TIME_CONSTANTS_SOURCE = ("ours: the fewest time constants of a setting BYOL's own ablation trained well "
                                 "(docs/methods.md §3); no effect on the CIFAR/ImageNet presets")


def ema_min_time_constants_option() -> Any:
    """The short-run rule of EMA targets (:func:`mimax.paradigms.self_distillation.ema_base`), one declaration
    for every method with an EMA target."""
    return option(EMA_MIN_TIME_CONSTANTS, EMA_MIN_TIME_CONSTANTS_HELP, EMA_MIN_TIME_CONSTANTS_SOURCE)


def check_ema(options: Any) -> None:
    require(0 <= options.ema_momentum < 1, "ema_momentum", f"must be in [0, 1) (got {options.ema_momentum})")
    spans = getattr(options, "ema_min_time_constants", EMA_MIN_TIME_CONSTANTS)
    require(spans >= 0, "ema_min_time_constants", f"must be >= 0 (got {spans})")


def check_predictor(options: Any) -> None:
    require(options.predictor_dim >= 1, "predictor_dim", f"must be >= 1 (got {options.predictor_dim})")


def check_target_init(options: Any, allowed: tuple[str, ...] = ("independent", "copy")) -> None:
    require(options.target_init in (None, *allowed), "target_init",
            f"expected {' or '.join(allowed)} (got {options.target_init!r})")
