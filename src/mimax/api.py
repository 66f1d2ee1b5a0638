"""The Python API: ``mimax.train(config)`` runs what ``mimax train`` runs and returns the results.

A :class:`~mimax.config.Config` is built from keyword arguments (``mimax.Config(model_name="SimCLR",
dataset="CIFAR10", epochs=10)``) or from the reference repository's flags
(``mimax.Config.from_flags("--model_name SDMI --dataset CIFAR10 --epochs 10")``); fields left at their
defaults take the dataset's and the method's presets, exactly as flags left out do.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from mimax.config import FIELD_NAMES, Config, notes, resolve_with_notes
from mimax.config.parsing import coerce, field_type
from mimax.config.presets import expand_paths
from mimax.engine.experiment import run_experiment
from mimax.errors import ConfigError
from mimax.store.rundir import ExperimentDir


def given_values(config: Config) -> dict[str, Any]:
    """The fields of ``config`` that differ from their defaults: what a user 'gave' (presets fill the rest)."""
    out = {}
    for f in fields(config):
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        value = getattr(config, f.name)
        if value != default:
            out[f.name] = value
    return out


def typed_values(given: dict[str, Any]) -> dict[str, Any]:
    """The given fields type-checked as a YAML file's are (``epochs="1"`` is ``--epochs: expected int, got '1'``,
    a ConfigError, not a TypeError from validation); a path given as a ``pathlib.Path`` is its string."""
    out = {}
    for name, value in given.items():
        if name == "method_options":  # checked against the method's own declarations when resolved
            out[name] = value
            continue
        if name == "unused":  # a run's record (a saved config.json given back): recomputed from the values
            if not isinstance(value, (list, tuple)) or not all(isinstance(flag, str) for flag in value):
                raise ConfigError("unused", f"expected the list of flag names a run records, got {value!r}")
            continue
        if isinstance(value, os.PathLike) and field_type(name)[0] is str:
            value = os.fspath(value)
        out[name] = coerce(name, value)
    return out


def resolved_config(given: dict[str, Any]):
    """``(config, checkpoint, notes)``: the resolved and validated config of the given values, or of the run
    they resume (``resume``; ``resume="auto"`` continues the run in ``output_dir`` if there is one, else
    starts it there), the checkpoint to resume from (or None), and the defaults fitted to a new run."""
    given = expand_paths(given)
    if given.get("resume") == "auto":  # a requeued job: continue the run if it exists, else start it
        if not given.get("output_dir"):
            raise ConfigError("--resume", "auto needs --output_dir (the run to continue, or to start there)")
        if ExperimentDir(given["output_dir"]).is_experiment():
            given["resume"] = given.pop("output_dir")
        else:
            del given["resume"]
    if given.get("resume"):
        exp, ckpt = ExperimentDir.for_resume(given["resume"])
        return exp.resume_config({k: v for k, v in given.items() if k != "resume"}), ckpt, []
    cfg, fitted = resolve_with_notes(given)
    return cfg, None, fitted


def config_of(config: Config | Mapping[str, Any] | None, kwargs: dict[str, Any]) -> Config:
    """The :class:`Config` of ``train``'s arguments: a Config, a mapping of its fields (a run's saved
    ``config.json``, read with ``json.load``) or keyword arguments. A name that is not a field is a ConfigError
    naming it (a user method's own options go in ``method_options``)."""
    if config is not None and kwargs:
        raise TypeError("give a Config (or a mapping of its fields) or keyword arguments, not both")
    if isinstance(config, Config):
        return config
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config must be a mimax.Config or a mapping of its fields, got {type(config).__name__}")
    values = dict(config if config is not None else kwargs)
    for name in values:
        if name not in FIELD_NAMES:
            close = difflib.get_close_matches(str(name), FIELD_NAMES, n=1)
            hint = f"did you mean {close[0]}?" if close else "a user method's own options go in method_options={...}"
            raise ConfigError(str(name), f"not a field of mimax.Config ({hint})")
    return Config(**values)


def train(config: Config | Mapping[str, Any] | None = None, /, *, progress: bool = False,
          **kwargs: Any) -> dict[str, Any]:
    """Train (or resume, with ``config.resume``) an experiment; return its results.

    ``config`` is a :class:`Config` or a mapping of its fields (``json.load`` of a run's ``config.json`` trains
    that run again), or give the fields as keyword arguments (``mimax.train(model_name="SimCLR",
    dataset="Gaussian", epochs=5)``). The return value is the content of the experiment's
    ``results.json`` (``summary``: per encoder, ``linear``/``knn`` mean, std and n over seeds; ``runs``:
    per seed) plus ``output_dir``; a run stopped by ``stop_after`` returns ``{"status": "incomplete",
    "output_dir": ...}``. Mistakes raise :class:`mimax.errors.UserError` (the CLI's one-line messages).
    """
    cfg, ckpt, _ = resolved_config(typed_values(given_values(config_of(config, kwargs))))
    for line in notes(cfg) if not cfg.resume else []:
        if line.startswith("mimax: warning: "):
            warnings.warn(line.removeprefix("mimax: warning: "), stacklevel=2)
    results = run_experiment(cfg, resume_checkpoint=ckpt, progress=progress)
    if results is None:
        return {"status": "incomplete", "output_dir": cfg.output_dir}
    return {**results, "status": "complete", "output_dir": cfg.output_dir}
