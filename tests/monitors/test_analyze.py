"""`mimax analyze` end to end: a mimax run, one of its checkpoints, an exported backbone and a torchvision
architecture with a weights file; the report's numbers against the monitors computed directly; bad input."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import TINY_GAUSSIAN, run_mimax
from mimax.cli import main
from mimax.monitors.api import monitor_values


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("an") / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "2", "--mi_interval", "0",
                 "--output_dir", str(d)]) == 0
    return d


def _report(out):
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "analysis.md", "analysis.png"]
    assert (out / "analysis.png").read_bytes()[:4] == b"\x89PNG"
    return json.loads((out / "analysis.json").read_text())


def test_analyze_a_mimax_run_matches_the_monitors(run_dir, tmp_path):
    proc = run_mimax(["analyze", str(run_dir), "--output_dir", str(tmp_path / "rep")])
    assert proc.returncode == 0, proc.stderr
    rep = _report(tmp_path / "rep")
    assert set(rep["representations"]) == {"backbone", "embedding"} and rep["dataset"] == "Gaussian"
    emb = rep["representations"]["embedding"]
    for key in ("mi_infonce", "mi_infonce_low", "mi_infonce_high", "score_InfoNCE_gap", "rankme", "lidar",
                "alpha_req", "alignment", "uniformity"):
        assert key in emb
    assert 0 <= rep["probe"]["linear"] <= 1 and 0 <= rep["probe"]["knn"] <= 1
    # the same numbers as the monitors applied directly to the run's encoder on its monitor set
    from mimax.data import build_data
    from mimax.evaluation.runs import open_run, rebuild_method
    from mimax.store.checkpoint import load_checkpoint

    run = open_run(str(run_dir))
    ckpt = load_checkpoint(run.seeds[0].latest_checkpoint())
    enc = rebuild_method(run.cfg, ckpt, run_dir, tuple(ckpt["input_shape"])).encoders()["f"]
    x_a, x_b = build_data(run.cfg, torch.device("cpu"), run.cfg.seed).monitor_views
    with torch.no_grad():
        direct = monitor_values(enc(x_a), enc(x_b))
    assert emb["rankme"] == pytest.approx(direct["rankme"], rel=1e-4)
    assert emb["mi_infonce"] == pytest.approx(direct["mi_infonce"], rel=1e-3, abs=1e-3)
    assert "| RankMe |" in (tmp_path / "rep" / "analysis.md").read_text()


def test_analyze_a_checkpoint_and_an_exported_backbone(run_dir, tmp_path):
    ckpt = sorted((run_dir / "seed_0" / "checkpoints").glob("*.pt"))[-1]
    assert main(["analyze", str(ckpt), "--output_dir", str(tmp_path / "c")]) == 0
    assert "embedding" in _report(tmp_path / "c")["representations"]
    assert main(["export", str(run_dir), "--out", str(tmp_path / "bb.pt")]) == 0
    assert main(["analyze", str(tmp_path / "bb.pt"), "--dataset", "Gaussian", "--output_dir", str(tmp_path / "e")]) == 0
    rep = _report(tmp_path / "e")
    assert list(rep["representations"]) == ["backbone"] and "exported MLP backbone" in rep["model"]


def test_analyze_a_torchvision_architecture_with_weights(tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "r18.pth")
    assert main(["analyze", "resnet18", "--weights", str(tmp_path / "r18.pth"), "--dataset", "Digits",
                 "--output_dir", str(tmp_path / "t")]) == 0
    rep = _report(tmp_path / "t")
    assert rep["representations"]["backbone"]["dim"] == 512
    assert rep["ignored_weights"] == ["fc.bias", "fc.weight"]
    assert rep["probe"]["linear"] > 0.3  # random features of 8x8 digits are far above chance (0.1)


def test_analyze_a_folder_smaller_than_a_training_batch(tmp_path):
    # analyze trains nothing, yet it refused "--batch_size: ImageFolder has 12 training images, fewer than one
    # batch of 256", a flag analyze does not have
    import torchvision
    from image_fixtures import write_class_tree

    write_class_tree(tmp_path / "data", ["a", "b"], per_class=8, size=(24, 24))
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "r18.pth")
    assert main(["analyze", "resnet18", "--weights", str(tmp_path / "r18.pth"), "--dataset", "ImageFolder",
                 "--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "t")]) == 0
    rep = _report(tmp_path / "t")
    assert rep["probe"]["train_size"] + rep["probe"]["test_size"] == 16


@pytest.mark.parametrize("args,message", [
    (["resnet18", "--dataset", "Digits"], "--weights: a torchvision architecture name (resnet18) needs a weights file"),
    (["notanet", "--weights", "x.pth", "--dataset", "Digits"], "MODEL: 'notanet' is neither an existing path"),
    (["notanet", "--dataset", "Digits"], "MODEL: 'notanet' is neither an existing path"),  # not "needs --weights"
    (["no/such/run", "--dataset", "Digits"], "MODEL: 'no/such/run' is neither an existing path"),
    # the model is checked before any data is read: the missing CIFAR-10 folder is not what is reported
    (["notanet", "--dataset", "CIFAR10", "--data_dir", "nowhere"], "MODEL: 'notanet' is neither an existing path"),
    (["resnet18", "--weights", "x.pth", "--dataset", "CIFAR10", "--data_dir", "nowhere"],
     "x.pth: not a PyTorch file that loads with weights_only=True"),
    (["resnet18", "--weights", "x.pth"], "--dataset: required unless MODEL is a mimax run or checkpoint"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    (tmp_path / "x.pth").write_bytes(b"junk")
    args = [a.replace("x.pth", str(tmp_path / "x.pth")) for a in args]
    message = message.replace("x.pth", str(tmp_path / "x.pth"))
    assert main(["analyze", *args, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimax: error: " + message) and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit,expected", [
    (lambda sd: {"foo": torch.zeros(3)}, "120 missing keys (conv1.weight, bn1.weight, bn1.bias, ...); 1 unexpected "
                                         "keys (foo)"),
    (lambda sd: {**sd, "layer1.0.conv1.weight": torch.zeros(3, 3)},
     "1 shape mismatches (layer1.0.conv1.weight (3, 3) vs (64, 64, 3, 3))"),
    (lambda sd: {k: v for k, v in sd.items() if k != "bn1.bias"}, "1 missing keys (bn1.bias)"),
])
def test_weights_that_do_not_fit_the_architecture_are_summarized_in_one_line(tmp_path, capsys, edit, expected):
    import torchvision

    torch.save(edit(torchvision.models.resnet18().state_dict()), tmp_path / "w.pth")
    # CIFAR10 without data: the weights are checked before any data is read
    assert main(["analyze", "resnet18", "--weights", str(tmp_path / "w.pth"), "--dataset", "CIFAR10", "--data_dir",
                 str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mimax: error: --weights: {tmp_path / 'w.pth'} does not match torchvision's resnet18: {expected}"
    assert not (tmp_path / "out").exists()


def test_an_existing_report_is_not_overwritten(run_dir, tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "analysis.json").write_text("{}")
    assert main(["analyze", str(run_dir), "--output_dir", str(out)]) == 2
    assert "already holds a report" in capsys.readouterr().err
    assert (out / "analysis.json").read_text() == "{}"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc (where no folder can be made)")
def test_an_output_dir_that_cannot_be_made_is_one_line(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--output_dir", "/proc/mimax_analysis"]) == 2
    assert capsys.readouterr().err.strip() == ("mimax: error: --output_dir: cannot write to /proc/mimax_analysis "
                                               "(No such file or directory)")
