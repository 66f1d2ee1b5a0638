"""--on_nan: a non-finite loss or gradient stops the run (naming the step, the terms and the last good
checkpoint, writing no checkpoint from the diverged weights) or, with skip, that optimizer step is skipped."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from mimax.cli import main
from mimax.engine.divergence import NonFiniteGuard, TrainingDiverged, check_weights
from mimax.methods import METHODS

# 4 steps per epoch; a checkpoint every epoch
ARGS = ["train", "--model_name", "JMI", "--dataset", "Gaussian", "--gm_train_size", "256", "--gm_test_size", "128",
        "--gm_monitor_size",
        "64", "--batch_size", "64", "--num_threads", "1", "--epochs", "3", "--model_save_interval", "1"]


def install(monkeypatch, bad_steps: set[int], kind: str) -> None:
    """Replace JMI by a JMI whose loss (kind="loss") or only its gradient (kind="grad") is NaN at bad_steps."""
    base = METHODS["JMI"]

    class Faulty(base):
        def training_loss(self, x_a, x_b, step):
            terms = super().training_loss(x_a, x_b, step)
            if step in bad_steps and kind == "loss":
                terms["loss"] = terms["loss"] * float("nan")
            elif step in bad_steps:  # value + 0, gradient sqrt'(0) * 0 = inf * 0 = NaN
                z = self.encoder(x_a)
                terms["loss"] = terms["loss"] + torch.sqrt((z - z.detach()).pow(2).sum())
            return terms

    monkeypatch.setitem(METHODS, "JMI", Faulty)


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_stop_names_step_terms_and_last_good_checkpoint(tmp_path, monkeypatch, capsys, kind):
    install(monkeypatch, {9}, kind)
    out = tmp_path / "run"
    assert main([*ARGS, "--output_dir", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    last_good = out / "seed_0" / "checkpoints" / "ckpt_epoch_0002.pt"
    assert err.startswith("mimax: error: training diverged at step 9 (epoch 3): non-finite loss or gradient (")
    assert f"last good checkpoint: {last_good};" in err
    assert ("loss=nan" in err) == (kind == "loss") and "joint=" in err and "marginal=" in err
    assert ("grad_norm=nan" in err)
    ckpts = sorted(p.name for p in (out / "seed_0" / "checkpoints").iterdir())
    assert ckpts == ["ckpt_epoch_0001.pt", "ckpt_epoch_0002.pt"], "no checkpoint from the diverged weights"
    status = json.loads((out / "seed_0" / "status.json").read_text())
    assert status["status"] == "diverged" and "step 9" in status["message"]
    assert json.loads((out / "status.json").read_text())["status"] == "incomplete"


def test_skip_skips_counts_and_finishes(tmp_path, monkeypatch, capsys):
    install(monkeypatch, {5, 6}, "loss")
    out = tmp_path / "run"
    assert main([*ARGS, "--on_nan", "skip", "--output_dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "mimax: warning: seed 0 epoch 2: skipped 2 step(s) with a non-finite loss or gradient (first: step 5," in err
    rows = list(csv.DictReader(open(out / "seed_0" / "metrics.csv")))
    assert [r["skipped_steps"] for r in rows] == ["0", "2", "0"]
    assert all(float(r["loss"]) == float(r["loss"]) for r in rows), "skipped steps are not averaged in"
    model = torch.load(out / "seed_0" / "checkpoints" / "ckpt_epoch_0003.pt", weights_only=True)["model"]
    assert all(torch.isfinite(t).all() for t in model.values() if t.is_floating_point())


def test_skip_after_stop_resumes_past_the_bad_step(tmp_path, monkeypatch, capsys):
    install(monkeypatch, {9}, "loss")
    out = tmp_path / "run"
    assert main([*ARGS, "--output_dir", str(out)]) == 3
    assert main(["train", "--resume", str(out), "--on_nan", "skip"]) == 0
    rows = list(csv.DictReader(open(out / "seed_0" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and rows[2]["skipped_steps"] == "1"


@pytest.mark.parametrize("mi_interval", ["1", "0"])  # the MI monitor's embeddings, or the collapse monitor's alone
def test_finite_but_huge_weights_under_skip_stop_in_one_line_at_the_epoch_end(tmp_path, capsys, mi_interval):
    """`--initial_lr 1e20 --on_nan skip`: the weights stay finite (the weight check passes) but the monitor
    set's embeddings overflow; rankme's SVD raised a traceback (exit 1). Now the divergence exit 3, one line,
    the seed marked diverged and no checkpoint of those weights."""
    out = tmp_path / "run"
    assert main([*ARGS, "--initial_lr", "1e20", "--on_nan", "skip", "--mi_interval", mi_interval,
                 "--output_dir", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mimax: error: training diverged by step 4: the ") and "of the monitor set are " \
        "non-finite (the weights are finite but so large that the activations overflow); no checkpoint written; " \
        "last good checkpoint: none (no checkpoint yet)" in err, err
    assert not any((out / "seed_0" / "checkpoints").iterdir())
    assert json.loads((out / "seed_0" / "status.json").read_text())["status"] == "diverged"


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))


def test_skip_leaves_weights_and_batchnorm_statistics_untouched():
    net = _mlp()
    guard = NonFiniteGuard("skip")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    guard.before_step(net)
    loss = net(torch.randn(16, 4)).sum() * float("nan")  # the forward updates the running statistics
    loss.backward()
    assert not torch.equal(net.state_dict()["1.running_mean"], before["1.running_mean"])
    assert guard.observe(0, {"loss": loss}, net.parameters()) is False
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    assert guard.epoch_report("here") == 1


@pytest.mark.parametrize("host_record", [True, False], ids=["host-record", "device-side"])
def test_stop_flag_is_read_only_at_the_check_interval(host_record):
    net = _mlp()
    guard = NonFiniteGuard("stop", check_interval=3, host_record=host_record)
    for step in range(3):
        net.zero_grad()
        loss = net(torch.randn(16, 4)).pow(2).sum() * (float("inf") if step == 1 else 1.0)
        loss.backward()
        assert guard.observe(step, {"loss": loss, "extra": loss.detach() * 0 + 7}, net.parameters()) is True
        assert guard.due() == (step == 2)
    with pytest.raises(TrainingDiverged, match=r"at step 1 \(epoch 1\).*loss=inf, extra=nan.*last good checkpoint: c"):
        guard.check(steps_per_epoch=10, last_good="c")


@pytest.mark.parametrize("host_record", [True, False], ids=["host-record", "device-side"])
def test_finite_steps_pass_the_check(host_record):
    net = _mlp()
    guard = NonFiniteGuard("stop", host_record=host_record)
    loss = net(torch.randn(16, 4)).sum()
    loss.backward()
    guard.observe(0, {"loss": loss}, net.parameters())
    guard.check(steps_per_epoch=1, last_good="c")  # no exception


def test_check_weights_names_the_non_finite_weight():
    net = _mlp()
    check_weights(net, 3, "c")
    with torch.no_grad():
        net[2].weight[0, 3] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"by step 3: weight 2.weight is non-finite; no checkpoint written"):
        check_weights(net, 3, "c")
