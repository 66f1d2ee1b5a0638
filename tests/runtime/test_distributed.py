"""torch.distributed on CPU (gloo): global-batch objectives with correct gradients, sharding, torchrun runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY_GAUSSIAN

WORKER = ROOT / "tests" / "distributed_worker.py"
# fp32; only the summation order differs between the runs (observed max relative difference ~2e-7). The
# absolute tolerance is relative to the step's largest gradient: a bias feeding a BatchNorm has a true
# gradient of 0, and its computed value is pure rounding noise (~1e-6 of the other gradients).
RTOL, ATOL = 1e-5, 1e-6


def torchrun(args: list[str], nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--standalone", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=env)


def why(proc: subprocess.CompletedProcess) -> str:
    """A failed torchrun's message: the ranks' own error lines (the launcher's traceback that ends stderr
    hides them: a rank killed by a signal shows there only as "Signal 6 (SIGABRT)"), then stderr's tail."""
    own = [line for line in proc.stderr.splitlines()
           if re.search(r"terminate called|what\(\)|Error|error:|Exception|gloo", line) and "elastic" not in line]
    return "\n".join(own[:20]) + "\n...\n" + proc.stderr[-1500:]


def _load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    """Every registered method: the 2-rank loss and the DDP-averaged gradients equal the 1-process loss and
    gradients on the concatenated batch (steps 0 and 1, so both sides of an alternating method)."""
    from distributed_worker import losses_and_grads

    from mimax.methods import METHODS

    two = torchrun([str(WORKER), str(tmp_path / "two.pt")])
    assert two.returncode == 0, why(two)
    for rank in (0, 1):  # the process group is gone with its threads once shut down: a gloo worker thread
        # still alive when the interpreter finalizes aborts the process (SIGABRT) when it frees its last tensors
        threads = (tmp_path / f"two.pt.rank{rank}.threads").read_text().split()
        assert not [t for t in threads if "gloo" in t], (rank, threads)
    ref = {name: losses_and_grads(name) for name in METHODS}  # this process: one rank, the whole batch
    dist = _load(tmp_path / "two.pt")

    assert sorted(ref) == sorted(dist) == sorted(METHODS)
    for name, steps in ref.items():
        for step, tensors in steps.items():
            assert set(dist[name][step]) == set(tensors), f"{name} step {step}: different parameters got gradients"
            assert len(tensors) > 1, f"{name} step {step}: no gradients"
            scale = max(float(v.abs().max()) for k, v in tensors.items() if k != "loss")
            for key, value in tensors.items():
                atol = max(ATOL, 1e-5 * scale) if key != "loss" else ATOL
                torch.testing.assert_close(dist[name][step][key], value, rtol=RTOL, atol=atol,
                                           msg=lambda m, n=name, s=step, k=key: f"{n} step {s} {k}: {m}")


def test_gather_is_identity_in_one_process():
    from mimax.runtime.distributed import gather_batch

    x = torch.randn(4, 3, requires_grad=True)
    assert gather_batch(x) is x


def _metrics(run_dir) -> list[dict[str, str]]:
    import csv

    with open(run_dir / "seed_0" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


ARGS = ["main.py", *TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "2", "--model_save_interval", "1"]


@pytest.mark.slow  # the SIGTERM test below covers the same 2-process stop and resume by default
def test_torchrun_training_stops_and_resumes_through_main(tmp_path):
    """2-process training through main.py, stopped after epoch 1 and resumed under torchrun: rank 0 alone
    writes one experiment directory, its checkpoints and results."""
    part = torchrun([*ARGS, "--output_dir", str(tmp_path / "run"), "--stop_after", "1"])
    assert part.returncode == 0, why(part)
    assert part.stdout.count("continue with: mimax train --resume") == 1  # printed by rank 0 only
    assert not (tmp_path / "run" / "results.json").exists()
    resumed = torchrun(["main.py", "--resume", str(tmp_path / "run")])
    assert resumed.returncode == 0, why(resumed)
    assert resumed.stdout.count("run directory:") == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["num_runs"] == 1 and results["runs"][0]["final"]
    env = json.loads((tmp_path / "run" / "seed_0" / "env.json").read_text())
    assert env["world_size"] == 2 and env["per_rank_batch"] == 32
    assert [r["epoch"] for r in _metrics(tmp_path / "run")] == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "run" / "seed_0" / "checkpoints").iterdir()) == \
           ["ckpt_epoch_0001.pt", "ckpt_epoch_0002.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_sigterm_to_torchrun_stops_every_rank_at_one_step_and_the_resume_is_bitwise_identical(tmp_path):
    """SIGTERM to the torchrun agent (what a scheduler sends the job) while the ranks train: the agent
    passes it to both ranks, rank 0 decides for both, one mid-epoch checkpoint is written, mimax prints its
    one line, and `--resume` under torchrun finishes the run as if it had never stopped; rank 0 alone writes
    the one experiment directory, its checkpoints and results."""
    args = [*ARGS[:-4], "--epochs", "12", "--model_save_interval", "6", "--mi_interval", "6",
            "--model_evaluation_interval", "6"]
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                              *args, "--output_dir", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "seed_0" / "metrics.csv").is_file():  # epoch 1 is done: the ranks are training
        assert agent.poll() is None and time.monotonic() < deadline, agent.communicate()
        time.sleep(0.02)
    agent.send_signal(signal.SIGTERM)
    stdout, stderr = agent.communicate(timeout=120)
    if "run directory:" in stdout:
        pytest.skip("the run finished before the signal arrived (machine too fast for this trial)")
    assert agent.returncode != 0  # torchrun's agent reports the signal itself (its own exit code, not 75)
    stopped = [line for line in stderr.splitlines() if line.startswith("mimax: stopped by SIGTERM at epoch ")]
    assert len(stopped) == 1, stderr[-3000:]  # rank 0 prints; both ranks stop at the same step
    ckpts = sorted(p.name for p in (out / "seed_0" / "checkpoints").iterdir())
    assert len(ckpts) == 1 and "_step_" in ckpts[0] and ckpts[0] in stopped[0], (ckpts, stopped)
    resumed = torchrun(["main.py", "--resume", str(out)])
    assert resumed.returncode == 0, why(resumed)
    assert resumed.stdout.count("run directory:") == 1
    env = json.loads((out / "seed_0" / "env.json").read_text())
    assert env["world_size"] == 2 and env["per_rank_batch"] == 32
    assert sorted(p.name for p in (out / "seed_0" / "checkpoints").iterdir()) == \
           ["ckpt_epoch_0006.pt", "ckpt_epoch_0012.pt"]  # the mid-epoch one is replaced by the next epoch's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    full = torchrun([*args, "--output_dir", str(tmp_path / "full")])
    assert full.returncode == 0, why(full)
    assert _metrics(out) == [{**r, "epoch_time_s": m["epoch_time_s"], "images_per_s": m["images_per_s"]}
                             for r, m in zip(_metrics(tmp_path / "full"), _metrics(out))]
    final = [json.loads((d / "results.json").read_text())["runs"][0]["final"] for d in (out, tmp_path / "full")]
    assert final[0] == final[1]


@pytest.mark.slow
def test_torchrun_resume_reproduces_the_uninterrupted_run(tmp_path):
    part = torchrun([*ARGS, "--output_dir", str(tmp_path / "part"), "--stop_after", "1"])
    assert part.returncode == 0, why(part)
    assert torchrun(["main.py", "--resume", str(tmp_path / "part")]).returncode == 0
    full = torchrun([*ARGS, "--output_dir", str(tmp_path / "full")])
    assert full.returncode == 0, why(full)
    cols = ("epoch", "step", "loss")
    assert [[r[c] for c in cols] for r in _metrics(tmp_path / "part")] == \
           [[r[c] for c in cols] for r in _metrics(tmp_path / "full")]


def test_global_batch_must_split_over_ranks(monkeypatch):
    """Config validation reads the number of processes torchrun starts (WORLD_SIZE) before any work."""
    from mimax.config import ConfigError, config_from_args
    from mimax.data.loading import per_rank_batch

    assert per_rank_batch(64, 4) == 16
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--batch_size: the global batch 63 must be divisible by the number of "
                                          r"processes \(2\)"):
        config_from_args([*TINY_GAUSSIAN, "--batch_size", "63"])


@pytest.mark.slow
def test_indivisible_global_batch_refused_under_torchrun(tmp_path):
    res = torchrun(["main.py", *TINY_GAUSSIAN, "--batch_size", "63", "--epochs", "1",
                    "--output_dir", str(tmp_path / "odd")])
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("mimax: ")]
    # said once (by rank 0), not once per rank
    assert errors == ["mimax: error: --batch_size: the global batch 63 must be divisible by the number of "
                      "processes (2)"], res.stderr[-3000:]
    assert not (tmp_path / "odd").exists()


def test_an_error_rank_0_meets_alone_is_one_line_and_no_rank_prints_a_traceback(tmp_path):
    """Rank 0 evaluates the random init alone while rank 1 waits at a barrier: a test image that does not decode
    stopped rank 0 with its one line, and rank 1 printed gloo's ~30-line "Connection closed by peer" traceback."""
    from image_fixtures import write_class_tree

    write_class_tree(tmp_path / "d" / "train", ["a", "b"], per_class=8, size=(12, 12))
    write_class_tree(tmp_path / "d" / "val", ["a", "b"], per_class=4, size=(12, 12))
    bad = sorted((tmp_path / "d" / "val" / "b").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # a valid header, truncated pixels
    res = torchrun(["-m", "mimax", "train", "--dataset", "ImageFolder", "--data_dir", str(tmp_path / "d"),
                    "--model_name", "SimCLR", "--resnet_width", "4", "--batch_size", "8", "--epochs", "1",
                    "--num_workers", "0", "--mi_interval", "0", "--precision", "fp32",
                    "--output_dir", str(tmp_path / "run")], timeout=240)
    assert res.returncode != 0
    ours = [line for line in res.stderr.splitlines() if line.startswith("mimax: ")]
    assert len(ours) == 2, res.stderr[-3000:]
    assert ours[0].startswith("mimax: error: ") and bad.name in ours[0]
    assert ours[1] == "mimax: (rank 1) stopped: another process of the run exited (its message is above)"
    lines = res.stderr.splitlines()
    ranks = lines[:next((i for i, line in enumerate(lines) if "elastic" in line), len(lines))]  # not the launcher's
    assert not any("Traceback" in line for line in ranks), res.stderr[-3000:]
    assert not (tmp_path / "run").exists()  # a failed fresh run leaves nothing behind


@pytest.mark.slow
def test_sync_bn_refused_on_cpu_ranks(tmp_path):
    res = torchrun(["main.py", *TINY_GAUSSIAN, "--epochs", "1", "--sync_bn", "--output_dir", str(tmp_path / "s")])
    assert res.returncode != 0
    assert "--sync_bn: torch's SyncBatchNorm needs CUDA devices" in res.stderr


@pytest.mark.parametrize("world", [2, 4])
def test_gaussian_ranks_partition_every_global_batch(world):
    from mimax.data.gaussian import GaussianViewLoader

    x = torch.randn(40, 3)
    loader = GaussianViewLoader(x, batch_size=8, noise=0.5, scaling=True, seed=1)
    ranks = [GaussianViewLoader(x, 8, 0.5, True, 1, rank=r, world=world) for r in range(world)]
    assert all(len(s) == len(loader) == 5 for s in ranks)
    for whole, *parts in zip(loader.epoch(3), *(s.epoch(3) for s in ranks)):
        for view in (0, 1):
            assert all(p[view].shape[0] == 8 // world for p in parts)
            assert torch.equal(torch.cat([p[view] for p in parts]), whole[view])


def test_ctrl_c_under_torchrun_is_said_once(tmp_path):
    """A terminal's Ctrl-C reaches every rank (here each sends itself SIGINT at the same step): rank 0 alone
    prints the line (each rank did), naming the run to continue."""
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MIMAX_SIGNAL_AT": "SIGINT:step:3"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                           *ARGS, "--output_dir", str(out)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mimax: interrupted")]
    assert lines == [f"mimax: interrupted; continue with: mimax train --resume {out} (under torchrun, as it was "
                     "started)"], why(proc)
