"""``--precision auto``: bf16 exactly where the device computes it natively, fp32 otherwise; the choice is
printed in one line at start and recorded in config.json (both branches, whatever this machine has)."""

from __future__ import annotations

import json

import pytest
import torch

import mimax.engine.precision as precision
from mimax.config import resolve
from mimax.engine.experiment import run_experiment
from mimax.engine.precision import choose_precision, native_bf16, resolve_precision

DIGITS = {"dataset": "Digits", "model_name": "SimCLR", "resnet_width": 4, "epochs": 1, "warmup_epochs": 0,
          "batch_size": 64, "num_threads": 1, "num_workers": 0, "device": "cpu", "mi_interval": 0,
          "train_subset": 256, "test_subset": 128}


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_auto_is_bf16_only_with_native_support(device_type):
    assert choose_precision("auto", device_type, "ResNet18", has_native_bf16=True) == "bf16"
    assert choose_precision("auto", device_type, "ResNet50", has_native_bf16=False) == "fp32"


def test_auto_keeps_fp32_for_vector_data_and_unknown_devices():
    assert choose_precision("auto", "cpu", "MLP", has_native_bf16=True) == "fp32"
    assert choose_precision("auto", "mps", "ResNet18", has_native_bf16=True) == "fp32"


@pytest.mark.parametrize("requested", ["fp32", "bf16", "fp16"])
def test_an_explicit_precision_is_never_changed(requested):
    for native in (True, False):
        assert choose_precision(requested, "cpu", "ResNet18", native) == requested


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("int8", "cpu", "ResNet18", True)


def test_cpu_probe_matches_the_cpu_flags():
    """The probe reads the same capability the kernel reports in /proc/cpuinfo (x86 Linux)."""
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "") or not open("/proc/cpuinfo").read():
        pytest.skip("not an x86 CPU with a readable /proc/cpuinfo")
    flags = set(open("/proc/cpuinfo").read().split())
    native, why = native_bf16(torch.device("cpu"))
    assert native == bool({"avx512_bf16", "amx_tile"} & flags), why


@pytest.mark.parametrize("native", [True, False])
def test_run_records_and_prints_its_choice(tmp_path, monkeypatch, capsys, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device: (native, "stub capability"))
    out = tmp_path / "run"
    cfg = resolve({**DIGITS, "output_dir": str(out)})
    assert cfg.precision == "auto"
    run_experiment(cfg, progress=True)
    want = "bf16" if native else "fp32"
    for config in (out / "config.json", out / "seed_0" / "config.json"):
        assert json.loads(config.read_text())["precision"] == want
    assert f"precision: {want} (--precision auto: stub capability)" in capsys.readouterr().out.splitlines()


def test_resolve_precision_reports_explicit_flags():
    assert resolve_precision("fp32", torch.device("cpu"), "ResNet18") == ("fp32", "precision: fp32 (--precision fp32)")
