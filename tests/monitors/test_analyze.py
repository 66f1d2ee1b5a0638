"""`mimax analyze` end to end: a mimax run, one of its checkpoints, an exported backbone and a torchvision
architecture with a weights file; the report's numbers against the monitors computed directly; bad input."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from conftest import TINY_GAUSSIAN, run_cli, run_mimax
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
    (["resnet18", "--weights", "x.pth"], "--dataset: required unless MODEL is a mimax run, checkpoint or exported "
                                         "backbone"),
    # a torchvision model that is not an image classifier: was a traceback, or (fcn_resnet50) a download attempt
    (["r3d_18", "--weights", "x.pth", "--dataset", "Digits"], "MODEL: 'r3d_18' is a torchvision model that is not "
                                                              "an image classifier"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    (tmp_path / "x.pth").write_bytes(b"junk")
    args = [a.replace("x.pth", str(tmp_path / "x.pth")) for a in args]
    message = message.replace("x.pth", str(tmp_path / "x.pth"))
    assert main(["analyze", *args, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimax: error: " + message) and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_model_name_beside_a_json_of_the_same_name_is_still_the_model(tmp_path, capsys, monkeypatch):
    """A sidecar beside no file is an interrupted export only when `mimax export` wrote it (it records the
    backbone's SHA-256): `resnet18` in a folder holding some resnet18.json is still torchvision's resnet18."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet18.json").write_text('{"architecture": "mine"}')
    (tmp_path / "x.pth").write_bytes(b"junk")
    assert main(["analyze", "resnet18", "--weights", "x.pth", "--dataset", "Digits", "--output_dir", "out"]) == 2
    assert capsys.readouterr().err.startswith("mimax: error: x.pth: not a PyTorch file that loads with weights_only")


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
    # a report file that is not a regular file is refused before anything is removed or written (the .json and
    # .md used to be replaced, then the .png's write failed: a new .json beside nothing of its own)
    (out / "analysis.png").mkdir()
    assert main(["analyze", str(run_dir), "--output_dir", str(out), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (f"mimax: error: --output_dir: {out / 'analysis.png'} exists and is "
                                               "not a regular file; refusing to replace it")
    assert (out / "analysis.json").read_text() == "{}" and sorted(p.name for p in out.iterdir()) == [
        "analysis.json", "analysis.png"]


def _files(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.name in ("analysis.json", "analysis.md", "analysis.png")}


@pytest.mark.parametrize("kill_at", ["write:analysis.md:1", "write:analysis.png:1", "write:analysis.json:1"])
def test_a_report_killed_while_replacing_another_is_never_mixed(run_dir, tmp_path, kill_at):
    """`analyze RUN`, then `analyze EXPORT --overwrite` into the same folder, killed inside one of its three
    writes: analysis.json used to be written first, so a kill left the new .json beside the old .md/.png of
    the other model, a report that looked whole. Now the old report is removed first and analysis.json (with
    the SHA-256 of its .md and .png) comes last: the folder holds the old report or part of the new one
    without analysis.json; the rerun without --overwrite says so in one line, with --overwrite it finishes."""
    out = tmp_path / "rep"
    assert main(["analyze", str(run_dir), "--output_dir", str(out)]) == 0
    old = _files(out)
    assert main(["export", str(run_dir), "--out", str(tmp_path / "bb.pt")]) == 0
    again = ["analyze", str(tmp_path / "bb.pt"), "--output_dir", str(out)]
    assert run_mimax([*again, "--overwrite"], kill_at=kill_at).returncode == -9
    now = _files(out)
    assert now == old or ("analysis.json" not in now and all(now[n] != old[n] for n in now)), sorted(now)
    if now:  # the rerun without --overwrite is refused in one line, and removes or writes nothing
        proc = run_cli(again)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert ("already holds a report" if now == old else f"holds an unfinished report ({', '.join(sorted(now))} "
                "without analysis.json: an interrupted mimax analyze); pass --overwrite") in proc.stderr
        assert _files(out) == now
    assert main([*again, "--overwrite"] if now else again) == 0
    report = _report(out)
    assert report["files_sha256"] == {n: hashlib.sha256((out / n).read_bytes()).hexdigest()
                                      for n in ("analysis.md", "analysis.png")}
    assert (out / "analysis.md").read_text().startswith(f"# Analysis of {report['model']}\n")
    assert "exported MLP backbone" in report["model"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc (where no folder can be made)")
def test_an_output_dir_that_cannot_be_made_is_one_line(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--output_dir", "/proc/mimax_analysis"]) == 2
    assert capsys.readouterr().err.strip() == ("mimax: error: --output_dir: cannot write to /proc/mimax_analysis "
                                               "(No such file or directory)")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("an") / "digits"
    assert main(["train", "--dataset", "Digits", "--model_name", "SimCLR", "--epochs", "1", "--warmup_epochs", "0",
                 "--train_subset", "256", "--batch_size", "64", "--resnet_width", "8", "--num_workers", "0",
                 "--mi_interval", "0", "--output_dir", str(d)]) == 0
    return d


def test_analyze_reads_a_run_as_its_training_evaluated_it(digits_run, tmp_path):
    """Same probe numbers as the run's results.json: kNN's k capped at a fifth of the 256 training images (analyze
    used k = 200: 46% where the run had 50%), the features under autocast to the run's --precision (bf16 on
    AVX512-BF16 CPUs)."""
    assert main(["analyze", str(digits_run), "--output_dir", str(tmp_path / "r")]) == 0
    probe = _report(tmp_path / "r")["probe"]
    final = json.loads((digits_run / "results.json").read_text())["runs"][0]["final"]["SimCLR"]
    assert probe["knn_k"] == 51
    assert (probe["linear"], probe["knn"]) == (final["linear"], final["knn"])


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_analyze_an_export_of_any_width_through_its_sidecar(digits_run, tmp_path, fmt):
    """An export of a --resnet_width 8 run (not a torchvision shape) and a safetensors export: both were refused;
    the sidecar names the architecture, widths and dataset (no --dataset needed)."""
    out = tmp_path / f"bb.{fmt}"
    assert main(["export", str(digits_run), "--out", str(out), *(["--format", fmt] if fmt != "pt" else [])]) == 0
    assert main(["analyze", str(out), "--output_dir", str(tmp_path / "e")]) == 0
    rep = _report(tmp_path / "e")
    assert rep["dataset"] == "Digits" and "exported ResNet18 backbone" in rep["model"]
    assert rep["representations"]["backbone"]["dim"] == 64  # width 8: 8 * 8 channels after layer4
    # measured in its run's precision (the sidecar records it): the same backbone numbers as the run's analysis
    # on the same monitor set (the probe differs: the export does not carry the run's --train_subset)
    assert main(["analyze", str(digits_run), "--output_dir", str(tmp_path / "r")]) == 0
    of_run = _report(tmp_path / "r")["representations"]["backbone"]
    for key in ("rankme", "alpha_req", "lidar", "uniformity", "score_InfoNCE_gap"):
        assert rep["representations"]["backbone"][key] == pytest.approx(of_run[key], rel=1e-6, abs=1e-9), key


def test_analyze_bad_monitor_size_and_inputs_a_model_cannot_take(digits_run, run_dir, tmp_path, capsys):
    assert main(["analyze", str(digits_run), "--monitor_size", "1", "--output_dir", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == ("mimax: error: --monitor_size: must be >= 2: the MI monitor and the "
                                               "evaluation need pairs (got 1)")
    # flags the run's dataset does not read were silently ignored (the mixture's monitor set is gm_monitor_size)
    assert main(["analyze", str(run_dir), "--monitor_size", "100", "--output_dir", str(tmp_path / "o")]) == 2
    assert "--monitor_size: --dataset Gaussian does not read it" in capsys.readouterr().err
    assert main(["analyze", str(digits_run), "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")]) == 2
    assert "--data_dir: --dataset Digits does not read it" in capsys.readouterr().err
    import torchvision

    torch.save(torchvision.models.squeezenet1_0().state_dict(), tmp_path / "sq.pth")  # its stem shrinks 8 px to 0
    assert main(["analyze", "squeezenet1_0", "--weights", str(tmp_path / "sq.pth"), "--dataset", "Digits",
                 "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimax: error: --dataset: torchvision squeezenet1_0 cannot take Digits's inputs of shape "
                          "(1, 8, 8) (") and "\n" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("wrap", ["state_dict", "backbone.", "module."])
def test_analyze_weights_saved_by_a_training_library(tmp_path, wrap):
    """A Lightning/solo-learn checkpoint keeps the weights under "state_dict", with the backbone's keys under
    "backbone." beside the heads': the backbone is read from it and the rest listed as ignored."""
    import torchvision

    torch.manual_seed(0)
    plain = torchvision.models.resnet18().state_dict()
    if wrap == "state_dict":
        saved = {"state_dict": plain, "epoch": 3}
    else:
        saved = {**{wrap + k: v for k, v in plain.items()}, "projector.0.weight": torch.zeros(4, 512)}
    torch.save(saved, tmp_path / "w.pth")
    assert main(["analyze", "resnet18", "--weights", str(tmp_path / "w.pth"), "--dataset", "Digits",
                 "--output_dir", str(tmp_path / "t")]) == 0
    rep = _report(tmp_path / "t")
    fc = ["fc.bias", "fc.weight"] if wrap == "state_dict" else [wrap + "fc.bias", wrap + "fc.weight"]
    assert rep["ignored_weights"] == sorted(fc + ([] if wrap == "state_dict" else ["projector.0.weight"]))
    torch.save(plain, tmp_path / "plain.pth")
    assert main(["analyze", "resnet18", "--weights", str(tmp_path / "plain.pth"), "--dataset", "Digits",
                 "--output_dir", str(tmp_path / "p")]) == 0
    assert _report(tmp_path / "p")["representations"] == rep["representations"]
