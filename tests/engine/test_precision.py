"""--precision / --channels_last / --compile: objectives stay fp32 under autocast, bf16 tracks fp32, fp16 is
refused on the CPU, channels-last layout, compiled backbones."""

from __future__ import annotations

import csv

import pytest
import torch

from conftest import TINY_GAUSSIAN, run_cli
from mimax.config import resolve
from mimax.engine.experiment import run_experiment
from mimax.engine.precision import StepPrecision, prepare_model, to_layout
from mimax.methods import METHODS, build_method

BASE = {"dataset": "Gaussian", "gm_train_size": 512, "gm_test_size": 256, "gm_monitor_size": 256, "batch_size": 64,
        "num_threads": 1, "device": "cpu"}
# Observed on 5 epochs (40 steps): |mean epoch loss bf16 - fp32| / max(1, |fp32|) <= 0.015 (JMI, SimCLR).
BF16_TOLERANCE = 0.03


def _epoch_losses(tmp_path, name: str, precision: str, **extra) -> list[float]:
    out = tmp_path / f"{name}_{precision}"
    cfg = resolve({**BASE, "model_name": name, "precision": precision, "epochs": 5, "output_dir": str(out), **extra})
    run_experiment(cfg, progress=False)
    with open(out / "seed_0" / "metrics.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


@pytest.mark.parametrize("name", ["JMI", "SimCLR"])
def test_bf16_training_tracks_fp32(tmp_path, name):
    fp32 = _epoch_losses(tmp_path, name, "fp32")
    bf16 = _epoch_losses(tmp_path, name, "bf16")
    assert fp32 != bf16  # autocast really ran the networks in bf16
    for a, b in zip(fp32, bf16):
        assert abs(a - b) / max(1.0, abs(a)) <= BF16_TOLERANCE, (fp32, bf16)
    assert bf16[-1] < bf16[0]  # and it trains


@pytest.mark.parametrize("name", sorted(METHODS))
def test_objective_is_computed_in_fp32_under_autocast(name):
    """Each objective call made under bf16 autocast returns what the objective gives in fp32, outside
    autocast, on the same (bf16-computed) embeddings: no matmul of the objective ran in bf16."""
    cfg = resolve({**BASE, "model_name": name})
    torch.manual_seed(0)
    method = build_method(cfg, (cfg.gm_dim,))
    x_a, x_b = torch.randn(32, cfg.gm_dim), torch.randn(32, cfg.gm_dim)
    calls = []
    original = method.objective

    def spy(*embeddings):
        out = original(*embeddings)
        calls.append(([z.detach().clone() for z in embeddings], out["loss"].detach().clone()))
        return out

    method.objective = spy
    with StepPrecision("bf16", torch.device("cpu")).autocast():
        loss = method(x_a, x_b, 0)["loss"]
    assert loss.dtype == torch.float32 and calls
    for inputs, value in calls:
        assert all(z.dtype == torch.float32 for z in inputs)
        torch.testing.assert_close(value, original(*inputs)["loss"].detach(), rtol=1e-6, atol=1e-6)


def test_fp16_refused_on_cpu(tmp_path):
    res = run_cli(["train", *TINY_GAUSSIAN, "--precision", "fp16", "--device", "cpu", "--output_dir",
                   str(tmp_path / "r")])
    assert res.returncode == 2
    assert res.stderr.strip() == ("mimax: error: --precision: fp16 needs a CUDA device (its GradScaler is "
                                  "CUDA-only); use bf16 on the CPU")
    assert not (tmp_path / "r").exists()


def test_unknown_precision_refused(tmp_path):
    res = run_cli(["train", *TINY_GAUSSIAN, "--precision", "int8", "--output_dir", str(tmp_path / "r")])
    assert res.returncode == 2 and "--precision: expected auto, fp32, bf16 or fp16 (got 'int8')" in res.stderr


def test_channels_last_layout_and_step_matches_contiguous():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(4, 3, 8, 8)
    nhwc = to_layout(x, True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and torch.equal(nhwc, x)
    assert to_layout(torch.randn(4, 3), True).shape == (4, 3)  # vectors pass through
    reference = conv(x)
    conv.to(memory_format=torch.channels_last)
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(conv(nhwc), reference, rtol=1e-5, atol=1e-5)


def test_prepare_model_compiles_each_backbone_once(monkeypatch):
    cfg = resolve({**BASE, "model_name": "SimCLR"})
    method = build_method(cfg, (cfg.gm_dim,))
    calls = []
    for encoder in method.encoders().values():
        monkeypatch.setattr(encoder.backbone, "compile", lambda *a, _b=encoder.backbone, **k: calls.append(_b))
    prepare_model(method, channels_last=False, compile_backbones=True)
    backbones = {id(e.backbone) for e in method.encoders().values()}
    assert sorted(map(id, calls)) == sorted(backbones)


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    eager = _epoch_losses(tmp_path, "SimCLR", "fp32")
    compiled = _epoch_losses(tmp_path / "c", "SimCLR", "fp32", compile=True)
    for a, b in zip(eager, compiled):
        assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), (eager, compiled)


@pytest.mark.parametrize("capability", ["AVX2", "AVX512"])
def test_channels_last_with_a_narrow_resnet_is_refused_where_onednn_corrupts_memory(tmp_path, monkeypatch, capsys,
                                                                                  capability):
    """On AVX2 kernels, torch's channels-last 1x1 stride-2 convolution with 2-6 input channels corrupts the
    heap in its weight gradient (SIGABRT mid-training): refused before anything is written, naming the flag.
    Elsewhere (validated only: this test machine may have AVX2 kernels) the same flags are accepted."""
    from mimax.cli import main
    from mimax.errors import ConfigError

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    narrow = {"dataset": "Digits", "model_name": "SimCLR", "resnet_width": 4, "channels_last": True, "device": "cpu"}
    if capability != "AVX2":
        assert resolve(narrow).channels_last  # accepted
        return
    with pytest.raises(ConfigError, match="--channels_last"):
        resolve(narrow)
    args = ["train", "--dataset", "Digits", "--model_name", "SimCLR", "--epochs", "1", "--train_subset", "128",
            "--test_subset", "64", "--batch_size", "32", "--num_threads", "1", "--mi_interval", "0",
            "--mi_critic_interval", "-1", "--channels_last", "--device", "cpu"]
    assert main([*args, "--resnet_width", "4", "--output_dir", str(tmp_path / "narrow")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimax: error: --channels_last: on this CPU (AVX2 kernels)") and "--resnet_width 4" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "narrow").exists()
    assert main([*args, "--resnet_width", "8", "--output_dir", str(tmp_path / "wide")]) == 0
    contiguous = [a for a in args if a != "--channels_last"]
    assert main([*contiguous, "--resnet_width", "4", "--output_dir", str(tmp_path / "contiguous")]) == 0
