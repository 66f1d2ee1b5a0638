"""The training engine end to end on the tiny Gaussian mixture: run directory, determinism, resume."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import TINY_GAUSSIAN, run_main, run_mimax
from mimax.cli import main

TIME_COLUMNS = {"epoch_time_s", "images_per_s"}  # wall-clock columns: the only non-deterministic ones


def read_rows(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(fh)]


def final_model(run):
    ckpts = sorted((run / "seed_0" / "checkpoints").glob("ckpt_epoch_*.pt"))
    return torch.load(ckpts[-1], weights_only=True)["model"]


@pytest.mark.parametrize("method", ["JMI", "SimCLR"])
def test_two_epoch_run_through_main_py(tmp_path, method):
    out = tmp_path / "run"
    proc = run_main([*TINY_GAUSSIAN, "--model_name", method, "--epochs", "2", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr
    for name in ("config.json", "env.json", "results.json", "results.md", "status.json"):
        assert (out / name).is_file(), name
    seed_dir = out / "seed_0"
    for name in ("config.json", "env.json", "metrics.csv", "eval.csv", "results.json",
                 "checkpoints/ckpt_epoch_0002.pt"):
        assert (seed_dir / name).is_file(), name
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and "git_commit" in env and env["device"] == "cpu"
    config = json.loads((out / "config.json").read_text())
    assert config["model_name"] == method and config["epochs"] == 2
    rows = list(csv.DictReader(open(seed_dir / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "lr", "epoch_time_s", "images_per_s"} <= set(rows[0])
    results = json.loads((out / "results.json").read_text())
    assert method in results["summary"] and "Random init (MLP)" in results["summary"]
    assert 0.0 <= results["summary"][method]["linear"]["mean"] <= 1.0
    assert json.loads((out / "status.json").read_text())["status"] == "complete"
    assert method in proc.stdout  # the results table is printed


def test_mimax_train_is_the_same_command(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    args = [*TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "1"]
    assert run_main([*args, "--output_dir", str(a)]).returncode == 0
    proc = run_mimax(["train", *args, "--output_dir", str(b)])
    assert proc.returncode == 0, proc.stderr
    assert read_rows(a / "seed_0" / "metrics.csv") == read_rows(b / "seed_0" / "metrics.csv")


def test_same_seed_gives_identical_metrics(tmp_path):
    args = [*TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "2"]
    assert main(["train", *args, "--output_dir", str(tmp_path / "a")]) == 0
    assert main(["train", *args, "--output_dir", str(tmp_path / "b")]) == 0
    assert main(["train", *args, "--output_dir", str(tmp_path / "c"), "--seed", "1"]) == 0
    a, b = (read_rows(tmp_path / x / "seed_0" / "metrics.csv") for x in "ab")
    c = read_rows(tmp_path / "c" / "seed_1" / "metrics.csv")
    assert a == b
    assert a != c  # a different seed really changes the run
    assert read_rows(tmp_path / "a" / "seed_0" / "eval.csv") == read_rows(tmp_path / "b" / "seed_0" / "eval.csv")


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_resume_is_bitwise_identical(tmp_path, optimizer):
    args = [*TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "4", "--warmup_epochs", "1",
            "--optimizer", optimizer, "--initial_lr", "0.1", "--weight_decay", "1e-4"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", *args, "--output_dir", str(full)]) == 0
    assert main(["train", *args, "--output_dir", str(part), "--stop_after", "2"]) == 0
    assert json.loads((part / "seed_0" / "status.json").read_text())["status"] == "incomplete"
    assert not (part / "results.json").exists()
    assert main(["train", "--resume", str(part)]) == 0
    a, b = final_model(full), final_model(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert read_rows(full / "seed_0" / "metrics.csv") == read_rows(part / "seed_0" / "metrics.csv")
    assert (json.loads((full / "results.json").read_text())["summary"]
            == json.loads((part / "results.json").read_text())["summary"])


def test_resume_from_checkpoint_file_and_refusals(tmp_path, capsys):
    args = [*TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "3", "--model_save_interval", "1"]
    run = tmp_path / "run"
    assert main(["train", *args, "--output_dir", str(run), "--stop_after", "2"]) == 0
    ckpt = run / "seed_0" / "checkpoints" / "ckpt_epoch_0001.pt"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--model_name", "SimCLR"]) == 2
    assert "--model_name: the run in" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(ckpt)]) == 0  # resumes from epoch 1, finishes epoch 3
    rows = list(csv.DictReader(open(run / "seed_0" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


def _epochs(run, seed):
    return [int(r["epoch"]) for r in csv.DictReader(open(run / f"seed_{seed}" / "metrics.csv"))]


def test_stop_after_is_a_budget_of_this_invocation_over_all_seeds(tmp_path, capsys):
    # it limited each seed (3 seeds x 2 epochs in one invocation) and, saved in config.json, stopped every
    # later `--resume` that did not repeat it
    run = tmp_path / "run"
    args = ["train", *TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "2", "--num_runs", "3", "--output_dir",
            str(run)]
    assert main([*args, "--stop_after", "3"]) == 0
    out = capsys.readouterr().out
    assert (_epochs(run, 0), _epochs(run, 1)) == ([1, 2], [1]) and not (run / "seed_2" / "metrics.csv").exists()
    assert f"stopped after 3 epoch(s) in this invocation, at epoch 1 of 2 of seed 1; continue with: mimax train " \
           f"--resume {run}" in out
    assert main(["train", "--resume", str(run), "--stop_after", "1"]) == 0  # finishes seed 1, seed 2 not started
    assert (_epochs(run, 1), (run / "seed_2" / "metrics.csv").exists()) == ([1, 2], False)
    assert main(["train", "--resume", str(run)]) == 0  # no --stop_after: to the end
    assert _epochs(run, 2) == [1, 2] and json.loads((run / "status.json").read_text())["status"] == "complete"
    # every invocation is recorded: env.json kept only the first one's (its world_size, its machine)
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 1 and [r["world_size"] for r in env["resumes"]] == [1, 1]
    seed1 = json.loads((run / "seed_1" / "env.json").read_text())
    assert [(r["epoch"], r["world_size"], r["per_rank_batch"]) for r in seed1["resumes"]] == [(1, 1, 64)]
    assert "resumes" not in json.loads((run / "seed_2" / "env.json").read_text())  # started, never resumed


def test_the_command_that_started_a_run_continues_it(tmp_path, monkeypatch):
    # `--resume auto` with the job script's flags unchanged was refused where the start normalized a value:
    # view_recipe auto -> the method's recipe, a user method's relative path -> its absolute path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mine.py").write_text(
        "from mimax import JointMethod\nfrom mimax.bounds import infonce_bound, cosine_scores\n\n\n"
        "class Mine(JointMethod):\n    def objective(self, z_a, z_b):\n"
        "        bound = infonce_bound(cosine_scores(z_a, z_b, 0.1))\n        return {'loss': -bound}\n")
    for method in ("BYOL", "m/mine.py:Mine"):
        job = ["train", *TINY_GAUSSIAN, "--model_name", method, "--view_recipe", "auto", "--epochs", "2",
               "--resume", "auto", "--output_dir", "run_" + method[:4].replace("/", "")]
        assert main([*job, "--stop_after", "1"]) == 0
        assert main(job) == 0, method
        assert _epochs(tmp_path / ("run_" + method[:4].replace("/", "")), 0) == [1, 2]


def test_foreign_checkpoint_is_refused(tmp_path, capsys):
    args = [*TINY_GAUSSIAN, "--epochs", "2"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *args, "--model_name", "JMI", "--output_dir", str(a), "--stop_after", "1"]) == 0
    assert main(["train", *args, "--model_name", "SimCLR", "--output_dir", str(b), "--stop_after", "1"]) == 0
    foreign = b / "seed_0" / "checkpoints" / "ckpt_epoch_0001.pt"
    target = a / "seed_0" / "checkpoints" / "ckpt_epoch_0001.pt"
    target.write_bytes(foreign.read_bytes())
    capsys.readouterr()
    assert main(["train", "--resume", str(a)]) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint is for method 'SimCLR', this run uses 'JMI'" in err and len(err.splitlines()) == 1
    target.write_bytes(b"not a checkpoint")
    assert main(["train", "--resume", str(a)]) == 2
    assert "not a readable mimax checkpoint" in capsys.readouterr().err


def test_num_runs_aggregates_mean_and_sample_std(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "1", "--num_runs", "2",
                 "--seed", "5", "--output_dir", str(out)]) == 0
    per_seed = [json.loads((out / f"seed_{s}" / "results.json").read_text()) for s in (5, 6)]
    values = [r["final"]["SimCLR"]["linear"] for r in per_seed]
    stat = json.loads((out / "results.json").read_text())["summary"]["SimCLR"]["linear"]
    mean = sum(values) / 2
    assert stat["mean"] == pytest.approx(mean)
    assert stat["std"] == pytest.approx(((values[0] - mean) ** 2 + (values[1] - mean) ** 2) ** 0.5)  # ddof=1
    md = (out / "results.md").read_text()
    assert "| SimCLR |" in md and "±" in md


def test_existing_output_dir_is_not_clobbered(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "1", "--output_dir", str(out)]
    assert main(["train", *args]) == 0
    before = (out / "seed_0" / "metrics.csv").read_bytes()
    capsys.readouterr()
    assert main(["train", *args]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "seed_0" / "metrics.csv").read_bytes() == before
    other = tmp_path / "notarun"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    assert main(["train", *TINY_GAUSSIAN, "--epochs", "1", "--output_dir", str(other), "--overwrite"]) == 2
    assert (other / "precious.txt").read_text() == "keep"
    assert main(["train", *args, "--overwrite"]) == 0


def test_tensorboard_event_files_hold_the_epoch_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "2", "--tensorboard",
                 "--output_dir", str(out)]) == 0
    acc = EventAccumulator(str(out / "seed_0" / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    rows = read_rows(out / "seed_0" / "metrics.csv")
    assert [e.value for e in loss] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-6)
    assert any(tag.startswith("eval/SimCLR/") for tag in acc.Tags()["scalars"])
    # epoch 0 (the random init's evaluation, the MI before the first step) as in eval.csv and mi.csv
    evals = read_rows(out / "seed_0" / "eval.csv")
    assert [e.step for e in acc.Scalars("eval/SimCLR/knn")] == [int(r["epoch"]) for r in evals] == [0, 2]
    assert [e.value for e in acc.Scalars("eval/SimCLR/knn")] == pytest.approx([float(r["knn"]) for r in evals])
    mi = [tag for tag in acc.Tags()["scalars"] if tag.startswith("mi/")]
    assert mi and all(acc.Scalars(tag)[0].step == 0 for tag in mi)


def test_a_resumed_tensorboard_log_drops_the_epochs_past_the_checkpoint(tmp_path):
    """A killed session logged epochs 3 and 4 past its epoch-2 checkpoint; the resumed session trains them
    again. TensorBoard shows each epoch once, with the resumed values (its purge_step); before, twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mimax.engine.loggers import TensorBoardLogger

    killed = TensorBoardLogger(tmp_path)
    for epoch in (1, 2, 3, 4):
        killed.log({"train/loss": float(epoch)}, epoch)
    killed.close()
    resumed = TensorBoardLogger(tmp_path, resumed_epoch=2)
    for epoch in (3, 4, 5):
        resumed.log({"train/loss": 10.0 * epoch}, epoch)
    resumed.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 1), (2, 2), (3, 30), (4, 40), (5, 50)]
