"""The configuration by concern: types of flags come from the dataclass, ConfigError and the one-line
parser live in mimax.errors, the data layer raises DataError (never a config error) and prints nothing."""

from __future__ import annotations

import ast
import typing
from dataclasses import fields

import pytest
import torch

from conftest import ROOT
from mimax.config import Config, config_from_args
from mimax.config.parsing import field_type
from mimax.data import build_data
from mimax.errors import ConfigError, DataError, OneLineParser, UserError


def test_flag_types_come_from_the_dataclass_type_hints():
    hints = typing.get_type_hints(Config)
    for f in fields(Config):
        if not f.metadata.get("flag", True):
            continue
        base, nullable = field_type(f.name)
        args = typing.get_args(hints[f.name]) or (hints[f.name],)
        assert base in args and nullable == (type(None) in args), f.name
    assert field_type("epochs") == (int, True) and field_type("initial_lr") == (float, True)
    assert field_type("augmentation") == (bool, True) and field_type("overwrite") == (bool, False)


def test_errors_module_holds_the_config_error_and_the_one_line_parser():
    assert issubclass(ConfigError, UserError) and str(ConfigError("--x", "bad")) == "--x: bad"
    parser = OneLineParser(prog="p")
    parser.add_argument("--n", type=int)
    with pytest.raises(ConfigError, match="invalid int value"):
        parser.parse_args(["--n", "x"])


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_data_layer_neither_raises_config_errors_nor_prints():
    for path in sorted((ROOT / "src" / "mimax" / "data").glob("*.py")):
        text = path.read_text()
        assert not {m for m in _imports(path) if m.startswith(("mimax.config", "mimax.methods"))}, path
        assert "ConfigError" not in text, path
        calls = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id == "print"]
        assert not calls, f"{path} prints"


def test_data_mismatch_is_a_data_error_naming_the_flag(capsys):
    cfg = config_from_args(["--dataset", "Digits", "--num_classes", "3", "--batch_size", "16"])
    with pytest.raises(DataError) as err:
        build_data(cfg, torch.device("cpu"), 0)
    assert not isinstance(err.value, ConfigError)
    assert str(err.value) == "--num_classes: Digits has 10 classes (got 3)"  # no "at None": Digits has no folder
    assert capsys.readouterr().out == ""


def test_no_labels_note_is_printed_by_the_command_not_the_data(capsys):
    cfg = config_from_args(["--dataset", "Digits", "--no_labels", "--batch_size", "16"])
    data = build_data(cfg, torch.device("cpu"), 0)
    assert data.num_classes is None and capsys.readouterr().out == ""
    from mimax.config import notes

    assert any(line.startswith("note: --no_labels: Digits is used without labels") for line in notes(cfg))
