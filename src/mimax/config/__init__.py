"""One typed configuration for a training job, by concern: the schema (:mod:`.schema`), the presets and
the resolution of what the user gave (:mod:`.presets`), the parsing of flags and YAML (:mod:`.parsing`)
and the validation before any work (:mod:`.validation`). ``ConfigError`` lives in :mod:`mimax.errors`.
"""

from __future__ import annotations

from typing import Any

from mimax.config.parsing import HELP_GROUPS, build_parser, coerce, config_from_flags, explicit_values
from mimax.config.presets import BASE_PRESET, DATASET_PRESETS, method_preset, resolve, resolve_with_notes
from mimax.config.schema import FIELD_NAMES, REFERENCE_FLAGS, RUNTIME_FIELDS, Config
from mimax.config.validation import notes, validate, validate_launch
from mimax.errors import ConfigError

# ``Config.from_flags(...)``: the schema cannot import the parser built on it, so the method is set here.
Config.from_flags = staticmethod(config_from_flags)


def config_from_args(argv: list[str] | None) -> Config:
    """The validated config of a ``mimax train`` command line."""
    return resolve(explicit_values(argv))


def config_from_dict(values: dict[str, Any]) -> Config:
    """The validated config of ``field: value`` pairs (types as YAML would give them)."""
    return resolve({k: coerce(k, v) for k, v in values.items()})


__all__ = ["HELP_GROUPS", "BASE_PRESET",
           "DATASET_PRESETS", "FIELD_NAMES", "REFERENCE_FLAGS", "RUNTIME_FIELDS", "Config",
           "ConfigError", "build_parser", "config_from_args", "config_from_dict", "config_from_flags",
           "explicit_values", "method_preset", "notes", "resolve", "resolve_with_notes", "validate", "validate_launch"]
