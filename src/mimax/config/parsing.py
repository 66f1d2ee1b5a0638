"""From a command line (and an optional YAML file) to the values the user gave.

Every :class:`~mimax.config.schema.Config` field is a flag; its type comes from the dataclass's type
hints (``int | None`` parses as ``int``, ``bool`` is a switch). Defaults are suppressed, so what the user
gave is known exactly (presets fill the rest; :func:`mimax.config.presets.resolve`).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from mimax.config.schema import FIELD_NAMES, FLAG_FIELDS, Config, whole_warmup
from mimax.data import CLASS_TREE, DATASETS, FLAT
from mimax.data.base import NotAFile, read_file_or_pipe
from mimax.errors import ConfigError, OneLineParser
from mimax.methods import METHODS, MethodNotFound

_HINTS = typing.get_type_hints(Config)


def hint_type(hint: Any) -> tuple[type, bool]:
    """``(base type, may be None)`` of a type hint (``int | None`` -> ``(int, True)``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def field_type(name: str) -> tuple[type, bool]:
    """``(base type, may be None)`` of a field, from the dataclass's type hints."""
    return hint_type(_HINTS[name])


def method_option_types(model_name: str | type | None) -> dict[str, tuple[type, bool]]:
    """The options of ``model_name``'s method (or of the method class given) that are not :class:`Config` fields
    (a user method's own; none for the built-in methods), with their types. Resolving the name may raise
    MethodNotFound."""
    if not model_name:
        return {}
    options = (model_name if isinstance(model_name, type) else METHODS.resolve(model_name)).Options
    hints = typing.get_type_hints(options)
    return {f.name: hint_type(hints[f.name]) for f in fields(options) if f.name not in FIELD_NAMES}


def resumed_option_types(model_name: str | None) -> dict[str, tuple[type, bool]]:
    """:func:`method_option_types` of the method the resumed run was trained with (none where that run or its
    method cannot be read: resuming reports it, naming ``--resume``)."""
    try:
        return method_option_types(model_name)
    except MethodNotFound:
        return {}


def add_option_arguments(parser: argparse.ArgumentParser, options: dict[str, tuple[type, bool]]) -> None:
    """Flags for a user method's own options (``--name value``; booleans ``--name`` / ``--no_name``, as mimax's
    own switches, or ``--no-name``). An option named like one of the parser's own flags (``--config``,
    ``--help``) is refused in one line."""
    for name, (base, _) in options.items():
        flags = [f"--{name}"] + ([f"--no_{name}", f"--no-{name}"] if base is bool else [])
        taken = [f for f in flags if f in parser._option_string_actions]
        if taken:
            raise ConfigError("--model_name", f"the method declares an option {name!r}, but {taken[0]} is a flag "
                                              "of mimax train itself; rename the option")
        if base is bool:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help="option of the chosen method (see `mimax methods`)")
            parser.add_argument(f"--no_{name}", dest=name, action="store_false", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
        else:
            parser.add_argument(f"--{name}", type=base, default=argparse.SUPPRESS, metavar=name.upper(),
                                help="option of the chosen method (see `mimax methods`)")


# ``--help`` groups, in order: each Config field names its group in its metadata (``group=...``).
HELP_GROUPS: dict[str, str] = {
    "data": "what to train on (--dataset, --data_dir; your own images: see the layouts under --dataset)",
    "model": "backbone and projector",
    "method": "the method (`mimax methods` lists each method's options) and its options",
    "optimization": "schedule and optimizer",
    "evaluation": "linear probe and kNN (docs/evaluation.md)",
    "monitoring": "MI estimates and collapse statistics during training (docs/monitoring.md)",
    "speed": "device, precision, threads and input pipeline (docs/performance.md)",
    "output": "run directory, seeds, checkpoints, resuming",
    "synthetic data": "the embedded Gaussian mixture (--dataset Gaussian only)",
}


def dataset_help() -> str:
    """``--dataset``'s help: every choice, and the on-disk layouts of the folder datasets."""
    return (f"one of {', '.join(sorted(DATASETS))}. Gaussian: the embedded synthetic mixture (no files). "
            "CIFAR10/CIFAR100/MNIST/FashionMNIST/TinyImageNet/ImageNet100: the files as distributed, in "
            "--data_dir (docs/data.md). Your own images: ImageFolder = " + CLASS_TREE + "; Folder = " + FLAT
            + ", without labels (implies --no_labels: pretraining only)")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`Config` field, in its help group (defaults suppressed so that 'given' is
    detectable)."""
    groups = {name: parser.add_argument_group(name, desc) for name, desc in HELP_GROUPS.items()}
    groups["output"].add_argument("--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
                                  help="YAML file of field: value pairs; flags given on the command line win")
    for f in FLAG_FIELDS:
        group = groups[f.metadata["group"]]
        help_text = dataset_help() if f.name == "dataset" else f.metadata["help"]
        help_text += "" if f.default is None else f" (default: {f.default})"
        base, _ = field_type(f.name)
        if base is bool:
            group.add_argument(f"--{f.name}", action="store_true", default=argparse.SUPPRESS, help=help_text)
            if f.metadata.get("negatable"):
                group.add_argument(f"--no_{f.name}", dest=f.name, action="store_false", default=argparse.SUPPRESS,
                                   help=f"turn --{f.name} off where a preset turns it on")
            continue
        group.add_argument(f"--{f.name}", type=base, default=argparse.SUPPRESS, help=help_text,
                           metavar=f.name.upper())


def build_parser(prog: str = "mimax train") -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        usage=f"{prog} [--config FILE.yaml] [--FLAG VALUE ...] (flags by group below)",
        description="Pretrain a self-supervised encoder by mutual-information maximization.",
        allow_abbrev=False,  # --epoch must not silently mean --epochs (docs/reliability.md)
    )
    add_config_arguments(parser)
    return parser


YAML12_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last silently)."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    duplicate = False
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark)
            return super().construct_mapping(node, deep)

    # YAML 1.2 reads an unquoted 1e-3 as a float; PyYAML (YAML 1.1) only 1.0e-3, and 1e-3 became the string
    # "1e-3". Resolved here, in the loader, so that a quoted "1e-3" stays a string, as "0.5" does.
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_EXPONENT, list("-+0123456789."))
    return StrictLoader


def load_yaml(path: str, extra: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The ``field: value`` mapping of a YAML file; keys must be flags (or names in ``extra``: the
    chosen user method's own options)."""
    data = recorded_keys_merged(read_yaml(path), path)
    flags = {f.name for f in FLAG_FIELDS}
    unknown = sorted(set(data) - flags - set(extra))
    if unknown:
        raise ConfigError("--config", f"{path}: unknown key(s) {', '.join(map(str, unknown))}")
    return data


def recorded_keys_merged(data: dict[str, Any], path: str) -> dict[str, Any]:
    """A run's saved ``config.json`` given as ``--config`` (JSON is YAML): its two recorded, non-flag keys read
    back as the flags they came from. ``method_options`` (a user method's own options) becomes top-level keys;
    ``unused`` (the reference flags the method did not read) is dropped, as the run recomputes it."""
    data = dict(data)
    unused = data.pop("unused", [])
    if not isinstance(unused, list) or not all(isinstance(name, str) for name in unused):
        raise ConfigError("--config", f"{path}: unused must be a list of flag names, got {unused!r}")
    options = data.pop("method_options", None) or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ConfigError("--config", f"{path}: method_options must be a mapping of option: value, got {options!r}")
    twice = sorted(set(options) & set(data))
    if twice:
        raise ConfigError("--config", f"{path}: {twice[0]} is given both at the top level and in method_options")
    return {**data, **options}


def read_yaml(path: str) -> dict[str, Any]:
    """The mapping a YAML file holds (string keys, each once; any names)."""
    import yaml

    p = Path(path).expanduser()  # `--config=~/x.yaml`: no shell expands a `~` after `=`
    try:
        text = read_file_or_pipe(p).decode("utf-8")  # a file, or a pipe (`--config <(...)`): read once, kept
    except NotAFile as exc:
        raise ConfigError("--config", f"{exc}: {path}" if str(exc) == "file not found" else f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError("--config", f"cannot read {path} ({reason})") from None
    try:
        loader = _strict_loader()(text)  # a SafeLoader: no tags that run code
        try:
            data = loader.get_single_data() or {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError("--config", f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must hold a mapping of field: value")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError("--config", f"{path}: keys must be field names, got {bad[0]!r}")
    return data


def coerce(name: str, value: Any, kind: tuple[type, bool] | None = None) -> Any:
    """Type-check a value from YAML against the field's type, or ``kind`` = (base type, may be None)
    (flags are typed by argparse)."""
    base, nullable = kind or field_type(name)
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"--{name}", "may not be null")
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, base)
    if not ok:
        raise ConfigError(f"--{name}", f"expected {base.__name__}, got {value!r}")
    if name == "warmup_epochs":
        return whole_warmup(float(value))
    return float(value) if base is float else value


def explicit_values(argv: list[str] | None,
                    recorded_method: Callable[[str, str | None], str | None] | None = None) -> dict[str, Any]:
    """Values the user gave: YAML file (if any) overridden by flags. Raises ConfigError on bad input.

    A user method's own options (not :class:`Config` fields) become flags once ``--model_name`` (or the
    YAML file's ``model_name``, or ``recorded_method(resume, output_dir)``: the method of the run ``--resume``
    continues, read by the CLI through the run directory's owner) names it; their values go to
    ``given["method_options"]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first = vars(parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])[0])
    model_name = first.get("model_name")
    if model_name is None and "config" in first:
        model_name = read_yaml(first["config"]).get("model_name")
    if model_name is None and recorded_method is not None and isinstance(first.get("resume"), str):
        own = resumed_option_types(recorded_method(first["resume"], first.get("output_dir")))
    else:
        own = method_option_types(model_name if isinstance(model_name, str) else None)
    add_option_arguments(parser, own)
    ns = vars(parser.parse_args(argv))
    given: dict[str, Any] = {}
    if "config" in ns:
        data = load_yaml(ns.pop("config"), extra=set(own))
        given.update({k: coerce(k, v, own.get(k)) for k, v in data.items()})
    given.update(ns)
    # a field given as None (YAML `null`, a flag's `auto`) is one left to the presets, as in Config(x=None): kept,
    # it counted as given (a preset warmup not fitted, a null option "not read", a resume refused as a change)
    given = {k: v for k, v in given.items() if v is not None or k in own}
    options = {k: given.pop(k) for k in list(given) if k in own}
    if options:
        given["method_options"] = options
    return given


def config_from_flags(flags: str | list[str]) -> Config:
    """The :class:`Config` of a ``mimax train`` command line (the reference repository's flags; a string
    is split as a shell would). Unset fields stay unset: presets fill them when training starts. Also
    ``Config.from_flags``."""
    argv = shlex.split(flags) if isinstance(flags, str) else list(flags)
    return Config(**explicit_values(argv))


__all__ = ["FIELD_NAMES", "add_config_arguments", "build_parser", "coerce", "config_from_flags", "explicit_values",
           "load_yaml"]
