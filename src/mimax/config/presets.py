"""Presets: what a field left unset takes, and the resolution of a user's values into a :class:`Config`.

Precedence (lowest to highest): field defaults < base preset < dataset preset < the method's presets for
the dataset (its ``Options.presets``, projector widths included) < the method's option defaults (for
the options it reads) < YAML file < flags. The method's options are the method's own (see
:mod:`mimax.paradigms.options`): a method-specific flag the chosen method does not read is refused,
except a flag of the reference repository's command line, which is kept (so the reference scripts run
unchanged), recorded in ``Config.unused`` and warned about.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from mimax.config.parsing import coerce, method_option_types
from mimax.config.schema import FIELD_NAMES, METHOD_OPTION_FIELDS, REFERENCE_FLAGS, Config, whole_warmup
from mimax.config.validation import validate
from mimax.data import DATASETS, DOWNLOADABLE, IMAGE_DATASETS
from mimax.errors import ConfigError
from mimax.fit import fit_to_run
from mimax.methods import METHODS
from mimax.methods.registry import canonical_name
from mimax.nets.backbones import WIDTH_SCALED
from mimax.paradigms import Method

BASE_PRESET: dict[str, Any] = dict(
    epochs=100, warmup_epochs=10, batch_size=256, initial_lr=0.05, weight_decay=1e-4,
    feature_dim=512, projection_dim=256, projection_layer=3, optimizer="sgd", architecture="ResNet18",
    model_save_interval=50, model_evaluation_interval=1000, augmentation=False, resnet_width=64,
)

# The paper's controlled Gaussian-mixture experiment (docs/experiments.md).
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "Gaussian": dict(
        architecture="MLP", epochs=50, warmup_epochs=0, batch_size=256, optimizer="adam", initial_lr=1e-3,
        weight_decay=0.0, feature_dim=64, projection_dim=3, projection_layer=2,
        model_save_interval=50, model_evaluation_interval=1000,
    ),
}
# Image datasets. Epochs and batch size: solo-learn's pretraining configs (CIFAR: 1000 epochs, batch 256;
# ImageNet-100: 400 epochs, batch 256 = 2 x 128); TinyImageNet has no standard protocol, we use
# ImageNet-100's. Image sizes are the datasets' native sizes (224 for ImageNet-style photos). The datasets
# with a documented recipe per method (the paper's four and the Fashion-MNIST CPU protocol, see
# scripts/README.md) train with the strong augmentation; the methods' presets add the rest of each recipe.
# FashionMNIST is the CPU protocol (scripts/README.md: width-16 ResNet-18 on 28x28, all 60,000 training
# images, 2 epochs of batch 128 with a 1-epoch warmup, a checkpoint every epoch: <= 8 minutes per method on a
# quiet 2-core CPU with native bf16); MNIST/Digits/ImageFolder/Folder: defaults of ours.
_IMAGE = dict(architecture="ResNet18", warmup_epochs=10, batch_size=256, model_save_interval=50,
              model_evaluation_interval=1000, monitor_size=2048)
_RECIPE = dict(_IMAGE, augmentation=True)
DATASET_PRESETS.update({
    "CIFAR10": dict(_RECIPE, epochs=1000, image_size=32),
    "CIFAR100": dict(_RECIPE, epochs=1000, image_size=32),
    "TinyImageNet": dict(_RECIPE, epochs=400, image_size=64),
    "ImageNet100": dict(_RECIPE, epochs=400, image_size=224, monitor_size=512),
    "FashionMNIST": dict(_RECIPE, epochs=2, warmup_epochs=1, batch_size=128, image_size=28, resnet_width=16,
                         crop_min_scale=0.25, model_save_interval=1, monitor_size=1024),
    # ImageFolder/Folder: image_size from the images (mimax.fit)
    "ImageFolder": dict(_IMAGE, epochs=200, monitor_size=512),
    "Folder": dict(_IMAGE, epochs=200, monitor_size=512),
    "MNIST": dict(_IMAGE, epochs=100, image_size=28),
    "Digits": dict(_IMAGE, epochs=50, warmup_epochs=5, batch_size=128, image_size=8, monitor_size=450),
})


def method_class(values: dict[str, Any]) -> type[Method]:
    """The method ``model_name`` names: built in, an entry point or an import path (one-line error)."""
    return METHODS.resolve(values.get("model_name", Config.model_name))


def method_preset(method: type[Method], dataset: str) -> dict[str, Any]:
    """The method's values for ``dataset``: its option defaults overridden by its per-dataset presets
    (which may also set the projector's widths), and its augmentation family."""
    defaults = {f: getattr(method.Options, f) for f in method.Options.names()}
    return {**defaults, "view_recipe": method.view_recipe, **method.Options.presets(dataset)}


def recipe_keys(method: type[Method], dataset: str) -> set[str]:
    """The fields the presets decide for (method, dataset): what `mimax train --model_name M --dataset D`
    trains with no other flag, and what a script reproducing that recipe must not contradict."""
    return set(BASE_PRESET) | set(DATASET_PRESETS.get(dataset, {})) | set(method_preset(method, dataset))


def unused_flags(method: type[Method], given: dict[str, Any]) -> list[str]:
    """The method-specific flags in ``given`` that ``method`` does not read: refused with a
    :class:`ConfigError`, except the reference repository's (returned, to be warned about)."""
    unused = []
    for name in given:
        if name in METHOD_OPTION_FIELDS and name not in method.Options.names():
            if name not in REFERENCE_FLAGS:
                readers = [m.name for m in METHODS.values() if name in m.Options.names()]
                raise ConfigError(f"--{name}", f"{method.name} does not read it (an option of "
                                               f"{', '.join(readers)}; see `mimax methods`)")
            unused.append(name)
    return unused


def refuse_unread(method: type[Method], given: dict[str, Any], options: Any) -> None:
    """An option the method declares but does not read under the chosen values (e.g. SDMI's
    ``--ema_momentum`` without ``--target_update ema``) is refused when given."""
    unread = options.unread()
    for name in sorted(set(unread) & (set(given) | set(given.get("method_options") or {}))):
        raise ConfigError(f"--{name}", f"{method.name} does not read it {unread[name]}")


# The data flags that only some datasets read, with the reason given when one is set for another dataset
# (it would be silently ignored): the image datasets' flags, the Gaussian mixture's, ImageNet100's class list and
# torchvision's downloader.
_IMAGE_ONLY = ("data_dir", "no_labels", "gpu_augment", "image_size", "crop_min_scale", "view_recipe", "train_subset",
               "test_subset", "monitor_size")
DATA_FLAG_READERS: dict[str, tuple[frozenset[str], str]] = {
    **{name: (IMAGE_DATASETS, "an image-dataset flag; the Gaussian mixture is shaped by the --gm_* flags")
       for name in _IMAGE_ONLY},
    "data_dir": (IMAGE_DATASETS - {"Digits"}, "the Gaussian mixture is generated and Digits ships with "
                                                "scikit-learn: neither is read from a folder"),
    **{name: (frozenset({"Gaussian"}), "--gm_* flags shape the Gaussian mixture only")
       for name in FIELD_NAMES if name.startswith("gm_")},
    "class_list": (frozenset({"ImageNet100"}), "only ImageNet100 selects its classes from a list"),
    "download": (DOWNLOADABLE, f"only {', '.join(sorted(DOWNLOADABLE))} can be downloaded"),
}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)}


def refuse_unread_data_flags(dataset: str, given: dict[str, Any], method: type[Method] | None = None) -> None:
    """A data flag that ``dataset`` does not read (:data:`DATA_FLAG_READERS`), given with a value other than the
    one the run would record anyway (its default; for ``view_recipe`` also ``auto`` and the method's recipe), is
    refused: it would be silently ignored (``--train_subset`` on the Gaussian mixture trained on all of it). So a
    saved ``config.json`` given as ``--config`` still works. Also checked when resuming and by ``mimax analyze``."""
    for name, value in given.items():
        readers, why = DATA_FLAG_READERS.get(name, (None, ""))
        if readers is None or dataset in readers or value is None or value == _DEFAULTS[name]:
            continue
        if name == "view_recipe" and value in ("auto", getattr(method, "view_recipe", "auto")):
            continue
        raise ConfigError(f"--{name}", f"--dataset {dataset} does not read it ({why})")


# Flags that the chosen architecture, optimizer or augmentation does not read: given with another value than the
# default they would be silently ignored. (Monitoring and logging settings given with their switch off, e.g.
# --wandb_project without --wandb, are a job template's normal state and pass.)
UNREAD_UNLESS: tuple[tuple[str, Any, str], ...] = (
    ("mlp_hidden_dim", lambda c: c.architecture != "MLP", "only the MLP backbone has a hidden width "
                                                         "(--architecture {architecture})"),
    ("momentum", lambda c: c.optimizer not in ("sgd", "lars"), "--optimizer {optimizer} has no momentum (sgd and "
                                                               "lars have)"),
    ("lars_eta", lambda c: c.optimizer != "lars", "only --optimizer lars has a trust coefficient (here "
                                                  "{optimizer})"),
    ("channels_last", lambda c: c.architecture == "MLP", "a memory layout of images; the MLP takes vectors"),
    ("view_recipe", lambda c: not c.augmentation and c.dataset != "Gaussian",
     "it chooses the --augmentation recipe; without --augmentation the views are crop + flip"),
)


def refuse_unread_fields(cfg: Config, given: dict[str, Any], method: type[Method]) -> None:
    """A flag of :data:`UNREAD_UNLESS` given (with another value than its default; ``view_recipe``: than the
    method's) where the resolved configuration does not read it is refused, naming why."""
    for name, unread, why in UNREAD_UNLESS:
        value = given.get(name)
        if value is None or value == _DEFAULTS[name] or not unread(cfg):
            continue
        if name == "view_recipe" and value in ("auto", method.view_recipe):
            continue
        raise ConfigError(f"--{name}", "not read by this run: " + why.format(**cfg.__dict__))


PATH_FIELDS = ("data_dir", "output_dir", "resume", "class_list")


def expand_paths(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` with ``~`` expanded in the path fields, as a shell expands it in a plain argument. A YAML value,
    ``--data_dir=~/x`` (no shell expands a ``~`` after ``=``) and the Python API would otherwise read the
    ``~`` literally: "directory not found", or a run written to a folder named ``~`` in the working directory."""
    return {k: os.path.expanduser(v) if k in PATH_FIELDS and isinstance(v, str) else v for k, v in given.items()}


def resolve(given: dict[str, Any]) -> Config:
    """Fill auto fields from the presets, check the method's options, then validate (before any work)."""
    return resolve_with_notes(given)[0]


def checked_method_options(method: type[Method], options: dict[str, Any]) -> dict[str, Any]:
    """A user method's own options as given (``method_options``: the Python API's way, or what the flags and YAML
    gave, already typed), each checked as the CLI checks it: a name the method declares and is not a
    :class:`Config` field (those are given as fields), a value of the declared type (an int for a float is
    widened)."""
    if not isinstance(options, dict):
        raise ConfigError("method_options", f"expected a dict of option: value, got {type(options).__name__}")
    types = method_option_types(method)
    out = {}
    for name, value in options.items():
        if name in FIELD_NAMES:
            raise ConfigError(f"--{name}", f"a field of the configuration, not one of {method.name}'s own options: "
                                           f"give {name}=... directly")
        if name not in types:
            raise ConfigError(f"--{name}", f"{method.name} has no option {name!r} (its own options: "
                                           f"{', '.join(sorted(types)) or 'none'})")
        out[name] = coerce(name, value, types[name])
    return out


def resolve_with_notes(given: dict[str, Any]) -> tuple[Config, list[str]]:
    """:func:`resolve`, and one note per default that was fitted to the run (:mod:`mimax.fit`)."""
    given = expand_paths(given)
    values = dict(given)
    dataset = values.get("dataset", Config.dataset)
    if dataset not in DATASETS:
        raise ConfigError("--dataset", f"unknown dataset {dataset!r}; expected one of {', '.join(sorted(DATASETS))}")
    method = method_class(values)
    refuse_unread_data_flags(dataset, given, method)
    values["model_name"] = canonical_name(values.get("model_name", Config.model_name))  # file paths: absolute
    unused = unused_flags(method, given)
    if values.get("view_recipe") == "auto":
        values["view_recipe"] = None
    preset = {**BASE_PRESET, **DATASET_PRESETS.get(dataset, {}), **method_preset(method, dataset)}
    own = checked_method_options(method, values.get("method_options") or {})  # a user method's own options
    for key, val in preset.items():
        if key not in FIELD_NAMES:
            own.setdefault(key, val)
        elif values.get(key) is None:
            values[key] = val
    if given.get("resnet_width") is None and values.get("architecture") not in WIDTH_SCALED:
        values["resnet_width"] = BASE_PRESET["resnet_width"]  # a dataset preset's width: mimax's ResNets only
    values["method_options"] = own
    values["unused"] = unused
    fitted = fit_to_run(values, given)
    values["warmup_epochs"] = whole_warmup(values.get("warmup_epochs"))
    cfg = Config(**values)
    validate(cfg)
    refuse_unread(method, given, method.Options.from_config(cfg))
    refuse_unread_fields(cfg, given, method)
    return cfg, fitted
