"""Where ``--model_name`` finds a method class: the built-in methods, methods that installed packages
register under the entry-point group ``mimax.methods``, and user classes named by an import path.

- ``SimCLR`` (built in), or an entry-point name: ``[project.entry-points."mimax.methods"]
  MyMethod = "my_pkg.methods:MyMethod"`` in the package's ``pyproject.toml``;
- ``my_pkg.my_module:MyMethod``: a class in an importable module;
- ``path/to/file.py:MyMethod``: a class in a Python file (recorded with its absolute path, so a run
  resumes from any working directory).

The class must subclass one of the two paradigms (:class:`mimax.JointMethod`,
:class:`mimax.SelfDistillationMethod`). Every failure is a :class:`MethodNotFound` with a one-line
message (a missing module or file, a missing class, a class that is not a method, options that are not
a :class:`~mimax.paradigms.MethodOptions` dataclass).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

from mimax.errors import ConfigError
from mimax.paradigms import JointMethod, Method, MethodOptions, SelfDistillationMethod
from mimax.paradigms.self_distillation import TARGET_RULES

ENTRY_POINT_GROUP = "mimax.methods"
FILE_MODULE_PREFIX = "mimax_user_methods"


class MethodNotFound(ConfigError):
    """``--model_name`` names no loadable method; ``str(err)`` is the reason in one line (prefixed by the
    flag when ``flag`` is given)."""

    def __init__(self, message: str, flag: str = ""):
        self.reason = message
        super().__init__(flag, message)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def is_import_path(name: str) -> bool:
    """``module:Class`` or ``file.py:Class`` (as opposed to a registered name)."""
    return ":" in name


def canonical_name(name: str) -> str:
    """``name`` as recorded in ``config.json``: file paths made absolute, everything else unchanged."""
    where, sep, attr = name.rpartition(":")
    if sep and _is_file(where):
        return f"{Path(where).expanduser().resolve()}:{attr}"
    return name


def display_name(name: str) -> str:
    """A short name for directories and messages: the class name of an import path."""
    return name.rpartition(":")[2] if is_import_path(name) else name


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def _module_from_file(path: Path):
    """Import a Python file as a module registered in ``sys.modules`` (dataclasses, pickling and
    ``torch.compile`` look classes up there) under a name unique to its absolute path."""
    if not path.is_file():
        raise MethodNotFound(f"file {path} not found")
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{FILE_MODULE_PREFIX}.{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MethodNotFound(f"cannot import {path} (not a Python file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error in the user's file is reported, in one line
        del sys.modules[name]
        raise MethodNotFound(f"cannot import {path} ({_first_line(exc)})") from None
    return module


def _module(where: str):
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise MethodNotFound(f"cannot import module {where!r} (no module named {exc.name!r})") from None
        raise MethodNotFound(f"cannot import module {where!r} ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - an error inside the user's module, in one line
        raise MethodNotFound(f"cannot import module {where!r} ({_first_line(exc)})") from None


def check_method_class(obj: object, origin: str) -> type[Method]:
    """``obj`` if it is a method class (a subclass of one of the two paradigms), else MethodNotFound."""
    if not (isinstance(obj, type) and issubclass(obj, (JointMethod, SelfDistillationMethod))
            and obj not in (JointMethod, SelfDistillationMethod)):
        kind = type(obj).__name__ if not isinstance(obj, type) else f"class {obj.__name__}"
        raise MethodNotFound(f"{origin} is a {kind}, not a method: subclass mimax.JointMethod or "
                             "mimax.SelfDistillationMethod")
    paradigm = JointMethod if issubclass(obj, JointMethod) else SelfDistillationMethod
    if obj.objective is paradigm.objective and obj.training_loss is paradigm.training_loss:
        args = "z_a, z_b" if paradigm is JointMethod else "p, z"
        raise MethodNotFound(f"{origin} declares no objective: define objective(self, {args}) returning a dict "
                             f"with the 'loss' to minimize (docs/extending.md)")
    names = _check_options_class(obj, origin).names()
    if paradigm is SelfDistillationMethod:
        _check_self_distillation(obj, origin, names)
    return obj


def _check_options_class(obj: type[Method], origin: str) -> type[MethodOptions]:
    """The method's ``Options``, if it is a :class:`MethodOptions` dataclass, else MethodNotFound."""
    options = obj.Options
    if not (isinstance(options, type) and issubclass(options, MethodOptions)):
        what = options.__name__ if isinstance(options, type) else f"a {type(options).__name__}"
        raise MethodNotFound(f"{origin} declares Options = {what}, which does not subclass "
                             "mimax.paradigms.MethodOptions: declare @dataclass(frozen=True) class MyOptions"
                             "(MethodOptions) with fields made by option(default, help, source) (docs/extending.md)")
    return options


def _check_self_distillation(obj: type[SelfDistillationMethod], origin: str, names: set[str] | list[str]) -> None:
    """The class attributes a self-distillation method declares: a known ``rule`` and ``reduction``, and the
    options its rule and its predictor read."""
    reductions = ("mean", "sum")
    if obj.rule not in TARGET_RULES:
        raise MethodNotFound(f"{origin} declares rule = {obj.rule!r}; expected one of {', '.join(TARGET_RULES)}")
    if obj.reduction not in reductions:
        raise MethodNotFound(f"{origin} declares reduction = {obj.reduction!r}; expected one of "
                             f"{', '.join(reductions)}")
    if (obj.has_predictor or "predictor" in names) and "predictor_dim" not in names:
        raise MethodNotFound(f"{origin} has a predictor but its Options declare no predictor_dim (the predictor's "
                             "hidden width): add predictor_dim: int = option(512, ...) as BYOL does "
                             "(docs/extending.md)")
    if obj.rule == "ema" and "target_update" not in names \
            and "ema_momentum" not in names:
        raise MethodNotFound(f"{origin} updates its target by EMA (rule 'ema', the paradigm's default) but its "
                             "Options declare no ema_momentum: add ema_momentum: float = option(0.99, ...) as BYOL "
                             "does, or set rule = 'copy' or 'alternate' (docs/extending.md)")


def load_import_path(name: str) -> type[Method]:
    """The class named by ``module:Class`` or ``file.py:Class``."""
    where, _, attr = name.rpartition(":")
    if not where or not attr:
        raise MethodNotFound(f"{name!r}: expected module:Class or path/to/file.py:Class")
    module = _module_from_file(Path(where).expanduser().resolve()) if _is_file(where) else _module(where)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise MethodNotFound(f"{where} has no class {attr!r}")
        obj = getattr(obj, part)
    return check_method_class(obj, name)


def entry_point_names() -> list[str]:
    """Names registered by installed packages under the ``mimax.methods`` entry-point group."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_entry_point(name: str) -> type[Method] | None:
    """The class an installed package registers as ``name`` (None if none does)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, in one line
                raise MethodNotFound(f"entry point {name!r} ({ep.value}) cannot be loaded "
                                     f"({_first_line(exc)})") from None
            return check_method_class(obj, f"entry point {name!r} ({ep.value})")
    return None


class MethodRegistry(dict):
    """``--model_name`` -> method class. Iterating lists the built-in methods; looking up a name also
    finds entry-point methods and ``module:Class`` / ``file.py:Class`` import paths (cached). A name
    that finds nothing raises :class:`MethodNotFound` (one line), not ``KeyError``."""

    def __init__(self, builtin: dict[str, type[Method]]):
        super().__init__(builtin)
        self._found: dict[str, type[Method]] = {}

    def __missing__(self, name: str) -> type[Method]:
        key = canonical_name(name)
        if key not in self._found:
            cls = load_import_path(key) if is_import_path(key) else load_entry_point(key)
            if cls is None:
                known = ", ".join([*self, *entry_point_names()])
                raise MethodNotFound(f"unknown method {name!r}; expected one of {known}, or an import path "
                                     "my_pkg.my_module:MyMethod or path/to/file.py:MyMethod")
            self._found[key] = cls
        return self._found[key]

    def get(self, name, default=None):  # type: ignore[override]
        try:
            return self[name]
        except MethodNotFound:
            return default

    def resolve(self, name: str, flag: str = "--model_name") -> type[Method]:
        """``self[name]``, with a failure reported as ``flag: reason``."""
        try:
            return self[name]
        except MethodNotFound as err:
            raise MethodNotFound(err.reason, flag) from None

    def listed(self) -> tuple[dict[str, type[Method]], dict[str, str]]:
        """Built-in and entry-point methods (what ``mimax methods`` shows without arguments), and the entry points
        that cannot be loaded, each with its one-line reason: one broken plugin does not hide the others."""
        out, broken = dict(self), {}
        for name in entry_point_names():
            if name not in out:
                try:
                    out[name] = self[name]
                except MethodNotFound as err:
                    broken[name] = err.reason
        return out, broken
