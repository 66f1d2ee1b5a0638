"""``mimax eval``, ``mimax table`` and ``mimax export`` end to end on tiny runs: each command once in a
subprocess as a user runs it, the other cases through the same CLI entry point in-process (``cli``),
which keeps the suite fast (each subprocess pays the torch import)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from conftest import TINY_GAUSSIAN, run_cli, run_mimax
from mimax.cli import main
from mimax.config import Config
from mimax.evaluation.results import aggregate
from mimax.methods import METHODS, build_method
from mimax.nets.backbones import mlp_backbone
from mimax.store.checkpoint import rng_state, save_checkpoint
from mimax.store.rundir import run_identity


@pytest.fixture
def cli(capsys):
    """``mimax ARGS`` through :func:`mimax.cli.main` in this process; returns a CompletedProcess."""

    def call(*argv: str) -> subprocess.CompletedProcess:
        code = main(list(argv))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(argv), code, captured.out, captured.err)

    return call


def one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mimax: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory) -> Path:
    """A finished 2-seed, 2-epoch JMI run on the tiny Gaussian mixture."""
    out = tmp_path_factory.mktemp("runs") / "jmi"
    proc = run_cli(["train", *TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "2", "--num_runs", "2",
                     "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr
    return out


# --- mimax eval ---------------------------------------------------------------------------------------


def test_eval_reproduces_training_numbers_without_touching_training_outputs(gaussian_run, cli):
    training_files = [gaussian_run / "results.json"] + [gaussian_run / f"seed_{s}" / f for s in (0, 1)
                                                         for f in ("results.json", "eval.csv", "metrics.csv")]
    before = {p: digest(p) for p in training_files}
    proc = run_mimax(["eval", str(gaussian_run), "--device", "cpu", "--num_threads", "1"])
    assert proc.returncode == 0, proc.stderr
    for seed in (0, 1):
        record = json.loads((gaussian_run / f"seed_{seed}" / "eval_ckpt_epoch_0002.json").read_text())
        trained = json.loads((gaussian_run / f"seed_{seed}" / "results.json").read_text())
        assert record["epoch"] == 2 and record["seed"] == seed and record["method"] == "JMI"
        assert record["final"] == trained["final"]  # same weights, same protocol, same CPU -> same numbers
        assert set(record["final"]["JMI"]) == {"linear", "knn", "linear_embedding"}
    assert "| JMI |" in proc.stdout and "| Random init (MLP) |" in proc.stdout
    assert {p: digest(p) for p in training_files} == before

    again = cli("eval", str(gaussian_run), "--device", "cpu")
    one_line_error(again, "eval_ckpt_epoch_0002.json", "--overwrite")
    seed1 = gaussian_run / "seed_1"
    proc = cli("eval", str(seed1), "--device", "cpu", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert "seed_0" not in proc.stdout and "seed_1" in proc.stdout


def test_eval_single_checkpoint_and_bad_inputs(gaussian_run, tmp_path, cli):
    ckpt = gaussian_run / "seed_1" / "checkpoints" / "ckpt_epoch_0002.pt"
    proc = cli("eval", str(gaussian_run), "--checkpoint", str(ckpt), "--device", "cpu", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert "seed_1" in proc.stdout and "seed_0" not in proc.stdout
    # killed inside the record's write: its temp file stayed in the run; the next eval of it removes it
    killed = run_mimax(["eval", str(gaussian_run), "--checkpoint", str(ckpt), "--overwrite"],
                       kill_at="write:eval_ckpt_epoch_0002.json:1")
    temps = lambda: [p.name for p in (gaussian_run / "seed_1").iterdir() if p.name.endswith(".tmp")]  # noqa: E731
    assert killed.returncode == -9 and len(temps()) == 1, (killed.returncode, temps())
    assert cli("eval", str(gaussian_run), "--checkpoint", str(ckpt), "--overwrite").returncode == 0
    assert temps() == []

    one_line_error(cli("eval", str(tmp_path / "missing")), "missing", "no such directory")
    one_line_error(cli("eval", str(tmp_path)), "no config.json")
    one_line_error(cli("eval", str(ckpt)), "not a directory")
    one_line_error(cli("eval", str(gaussian_run / "seed_0"), "--checkpoint", str(ckpt)), "not in")
    one_line_error(cli("eval", str(gaussian_run), "--checkpoint", str(tmp_path / "x.pt")), "not a file")
    one_line_error(cli("eval", str(gaussian_run), "--device", "cuda:7"), "--device")

    broken = tmp_path / "broken"  # a copy of the run whose only checkpoint is truncated
    (broken / "seed_0" / "checkpoints").mkdir(parents=True)
    (broken / "config.json").write_text((gaussian_run / "config.json").read_text())
    (broken / "seed_0" / "checkpoints" / "ckpt_epoch_0002.pt").write_bytes(ckpt.read_bytes()[:500])
    one_line_error(cli("eval", str(broken), "--device", "cpu"), "ckpt_epoch_0002.pt", "not a readable")
    empty = tmp_path / "empty"
    (empty / "seed_0").mkdir(parents=True)
    (empty / "config.json").write_text((gaussian_run / "config.json").read_text())
    one_line_error(cli("eval", str(empty)), "no checkpoint found")


# --- mimax table ----------------------------------------------------------------------------------------


def write_results(exp_dir: Path, method: str, dataset: str, runs: list[dict], seeds: list[int] | None = None) -> None:
    """A results.json as training writes it (summary = aggregate over the seeds' runs)."""
    exp_dir.mkdir(parents=True)
    results = {"method": method, "dataset": dataset, "architecture": "ResNet18", "epochs": 3,
               "num_runs": len(runs), "summary": aggregate(runs), "runs": runs}
    if seeds is not None:
        results["seeds"] = seeds
    (exp_dir / "results.json").write_text(json.dumps(results))


def cell(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values, ddof=1):.2f}"


def table_rows(text: str, title: str) -> dict[str, list[str]]:
    block = text.split(f"## {title}")[1].split("##")[0]
    rows = [line.strip("|").split("|") for line in block.strip().splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0]]
    return {"header": header[1:], **{r[0].strip(): [c.strip() for c in r[1:]] for r in rows[2:]}}


def test_table_has_the_paper_shape(tmp_path, cli):
    rng = np.random.default_rng(0)
    acc = {}

    def run(labels: list[str], dataset: str) -> dict:
        metrics = {lab: {"linear": float(rng.uniform(0.3, 0.9)), "knn": float(rng.uniform(0.3, 0.9))} for lab in labels}
        rnd = {"linear": float(rng.uniform(0.1, 0.3)), "knn": float(rng.uniform(0.1, 0.3))}
        for lab, m in [*metrics.items(), ("Random init (ResNet18)", rnd)]:
            for k, v in m.items():
                acc.setdefault((lab, dataset, k), []).append(v)
        return {"final": metrics, "random_init": {"Random init (ResNet18)": rnd}}

    # datasets given out of the paper's order; SDMI with its two encoders
    write_results(tmp_path / "simclr_c100", "SimCLR", "CIFAR100", [run(["SimCLR"], "CIFAR100") for _ in range(3)])
    write_results(tmp_path / "sdmi_c10", "SDMI", "CIFAR10",
                  [run(["SDMI (f_θ)", "SDMI (g_ξ)"], "CIFAR10") for _ in range(3)])
    write_results(tmp_path / "simclr_c10", "SimCLR", "CIFAR10", [run(["SimCLR"], "CIFAR10") for _ in range(3)])
    dirs = [str(tmp_path / d) for d in ("simclr_c100", "sdmi_c10", "simclr_c10")]
    out = tmp_path / "table.md"
    proc = run_cli(["table", *dirs, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.strip() in proc.stdout
    for title, metric in (("Linear probe top-1 (%)", "linear"), ("kNN top-1 (%)", "knn")):
        rows = table_rows(text, title)
        assert rows.pop("header") == ["CIFAR10", "CIFAR100"]
        sdmi_first = [m for m in METHODS if m == "SDMI"]  # the registry's order decides (SDMI leads once merged)
        expected_rows = ["SDMI (f_θ)", "SDMI (g_ξ)", "SimCLR"] if sdmi_first else list(rows)[:3]
        assert list(rows)[:3] == expected_rows and list(rows)[3] == "Random init (ResNet18)"
        assert rows["SDMI (f_θ)"] == [cell(acc[("SDMI (f_θ)", "CIFAR10", metric)]), "–"]
        assert rows["SDMI (g_ξ)"][0] == cell(acc[("SDMI (g_ξ)", "CIFAR10", metric)])
        assert rows["SimCLR"] == [cell(acc[("SimCLR", d, metric)]) for d in ("CIFAR10", "CIFAR100")]
        # random init: pooled over the two CIFAR10 experiments (6 draws), marked with its n
        pooled = acc[("Random init (ResNet18)", "CIFAR10", metric)]
        assert len(pooled) == 6 and rows["Random init (ResNet18)"][0] == f"{cell(pooled)} (n=6)"
    assert "over 3 seeds" in text

    one_line_error(cli("table", *dirs, "--out", str(out)), "already exists", "--overwrite")
    assert cli("table", *dirs, "--out", str(out), "--overwrite").returncode == 0
    one_line_error(cli("table", dirs[2], dirs[2]), "both give 'SimCLR' on CIFAR10")
    one_line_error(cli("table", str(tmp_path / "nope")), "nope", "no such experiment directory")
    one_line_error(cli("table", str(tmp_path)), "no results.json")
    one_line_error(cli("table", dirs[0], "--out", str(tmp_path / "no" / "t.md")), "does not exist")


def test_table_from_a_real_run(gaussian_run, cli):
    proc = cli("table", str(gaussian_run))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((gaussian_run / "results.json").read_text())
    linear = table_rows(proc.stdout, "Linear probe top-1 (%)")
    assert linear["header"] == ["Gaussian"]
    stat = results["summary"]["JMI"]["linear"]
    assert linear["JMI"] == [f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"]
    assert not math.isnan(stat["std"])
    # a seed folder given: its results.json was "not a mimax results file ('summary')"
    one_line_error(cli("table", str(gaussian_run / "seed_1")), f"{gaussian_run / 'seed_1'}: a seed of the experiment "
                   f"{gaussian_run}; give the experiment directory (its results.json holds every seed)")


# --- mimax export ---------------------------------------------------------------------------------------


def test_export_mlp_backbone(gaussian_run, tmp_path, cli):
    out = tmp_path / "mlp.pt"
    proc = run_mimax(["export", str(gaussian_run), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "MLP backbone" in proc.stdout and "not a torchvision model" in proc.stdout
    state = torch.load(out, weights_only=True)
    net = mlp_backbone(16, 64)
    net.load_state_dict(state, strict=True)
    ckpt = torch.load(gaussian_run / "seed_0" / "checkpoints" / "ckpt_epoch_0002.pt", weights_only=True)
    assert all(torch.equal(v, ckpt["model"][f"encoder.backbone.{k}"]) for k, v in state.items())

    one_line_error(cli("export", str(gaussian_run), "--out", str(out)), "already exists")
    one_line_error(cli("export", str(gaussian_run), "--out", str(tmp_path / "x.pt"), "--encoder", "g_xi"),
                   "--encoder", "'g_xi'")
    one_line_error(cli("export", str(tmp_path / "nope"), "--out", str(tmp_path / "y.pt")), "no such directory")
    one_line_error(cli("export", str(gaussian_run)), "--out")
    # a sidecar path that cannot be written is refused before the backbone is: it was written, then the error
    (tmp_path / "z.pt.json").mkdir()
    one_line_error(cli("export", str(gaussian_run), "--out", str(tmp_path / "z.pt"), "--overwrite"),
                   "z.pt.json exists and is not a regular file")
    assert not (tmp_path / "z.pt").exists()


def resnet_run(root: Path, input_shape: tuple[int, int, int]) -> tuple[Path, nn.Module]:
    """A one-seed JMI ResNet18 run directory written the way training writes it (config.json and a
    checkpoint in the trainer's format), with trained-looking weights and BatchNorm statistics."""
    cfg = Config(model_name="JMI", dataset="CIFAR10", architecture="ResNet18", num_classes=10, epochs=1,
                 warmup_epochs=0, batch_size=8, initial_lr=0.1, weight_decay=0.0, temperature=0.1, feature_dim=32,
                 projection_dim=16, projection_layer=2, model_save_interval=1, model_evaluation_interval=1,
                 optimizer="sgd", resnet_width=64)
    torch.manual_seed(0)
    method = build_method(cfg, input_shape)
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    for _ in range(2):  # move weights and BN running stats away from their initial values
        x = torch.randn(8, *input_shape)
        loss = method.training_loss(x, x + 0.1 * torch.randn_like(x), 0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    run_dir = root / "resnet_run"
    (run_dir / "seed_0" / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(cfg.to_json())
    save_checkpoint({"method": "JMI", "run_id": run_identity(cfg, 0), "architecture": "ResNet18",
                     "dataset": "CIFAR10", "epoch": 1, "step": 2, "seed": 0, "model": method.state_dict(),
                     "optimizers": {}, "rng": rng_state(), "random_init": {}, "input_shape": list(input_shape)},
                    run_dir / "seed_0" / "checkpoints" / "ckpt_epoch_0001.pt")
    return run_dir, method.eval()


@pytest.mark.parametrize("input_shape,subprocess_call", [((3, 32, 32), True), ((1, 28, 28), False)])
def test_export_resnet18_loads_into_torchvision_with_the_cifar_stem(tmp_path, cli, input_shape, subprocess_call):
    run_dir, method = resnet_run(tmp_path, input_shape)
    out = tmp_path / "backbone.pt"
    args = ["export", str(run_dir), "--out", str(out)]
    proc = run_mimax(args) if subprocess_call else cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "torchvision.models.resnet18 with strict=True" in proc.stdout

    # the documented stem change, written out here independently of mimax's code
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.load_state_dict(torch.load(out, weights_only=True), strict=True)
    net.eval()
    x = torch.randn(4, *input_shape)
    with torch.no_grad():
        torch.testing.assert_close(net(x), method.encoders()["f"].backbone(x), rtol=0, atol=0)
        assert net(x).shape == (4, 512)


def test_table_and_plot_refuse_an_out_inside_a_run_they_read(tmp_path, cli):
    """`--out RUN/...` (here a run without the .mimax-run marker, so only the RUN_DIRs given tell it is one)
    replaced the run's own files with --overwrite; refused, new file or existing, and nothing is written."""
    exp = tmp_path / "exp"
    write_results(exp, "SimCLR", "CIFAR10", [{"final": {"SimCLR": {"linear": 0.5, "knn": 0.4}}}], seeds=[0])
    (exp / "config.json").write_text(json.dumps({"model_name": "SimCLR", "dataset": "CIFAR10", "seed": 0}))
    (exp / "seed_0").mkdir()
    (exp / "seed_0" / "eval.csv").write_text("mine")
    before = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file()}
    for out, command in ((exp / "seed_0" / "eval.csv", ["table", str(exp)]), (exp / "t.md", ["table", str(exp)]),
                         (exp / "seed_0" / "f.png", ["plot", "accuracy", str(exp / "seed_0")])):
        one_line_error(cli(*command, "--out", str(out), "--overwrite"),
                       f"--out: {out} is inside the mimax run {exp}, which holds only what its training wrote")
    assert {p: p.read_bytes() for p in exp.rglob("*") if p.is_file()} == before
    assert cli("table", str(exp), "--out", str(tmp_path / "t.md")).returncode == 0  # beside the run: written


def test_table_counts_each_random_init_seed_once(tmp_path):
    """Experiments with the same seed evaluated the same initialization: pooled once per seed."""
    def runs(rnd_values, label):
        return [{"final": {label: {"linear": 0.8, "knn": 0.7}},
                 "random_init": {"Random init (ResNet18)": {"linear": r, "knn": r}}} for r in rnd_values]

    write_results(tmp_path / "a", "SimCLR", "CIFAR10", runs([0.20, 0.30], "SimCLR"), seeds=[0, 1])
    write_results(tmp_path / "b", "JMI", "CIFAR10", runs([0.20, 0.30], "JMI"), seeds=[0, 1])
    write_results(tmp_path / "c", "BYOL", "CIFAR10", runs([0.40], "BYOL"), seeds=[2])
    proc = run_cli(["table", *(str(tmp_path / d) for d in "abc")])
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout, "Linear probe top-1 (%)")
    assert rows["Random init (ResNet18)"][0] == f"{cell([0.2, 0.3, 0.4])} (n=3)"


def test_table_merges_seeds_of_one_configuration_only(tmp_path):
    def runs(values):
        return [{"final": {"SimCLR": {"linear": v, "knn": v}},
                 "random_init": {"Random init (ResNet18)": {"linear": 0.1, "knn": 0.1}}} for v in values]

    config = {"model_name": "SimCLR", "dataset": "CIFAR10", "epochs": 3, "initial_lr": 0.4}
    other = {**config, "initial_lr": 1.0}
    for name, values, seeds, cfg in (("s0", [0.50], [0], config), ("s12", [0.60, 0.70], [1, 2], config),
                                     ("again", [0.55], [0], config), ("other", [0.9], [5], other)):
        write_results(tmp_path / name, "SimCLR", "CIFAR10", runs(values), seeds=seeds)
        (tmp_path / name / "config.json").write_text(json.dumps({**cfg, "seed": seeds[0], "num_runs": len(seeds),
                                                                 "output_dir": str(tmp_path / name)}))
    proc = run_cli(["table", str(tmp_path / "s0"), str(tmp_path / "s12")])
    assert proc.returncode == 0, proc.stderr
    assert table_rows(proc.stdout, "Linear probe top-1 (%)")["SimCLR"] == [cell([0.5, 0.6, 0.7])]
    for clash in ("again", "other"):  # overlapping seeds, or another configuration: refused
        proc = run_cli(["table", str(tmp_path / "s0"), str(tmp_path / clash)])
        assert proc.returncode == 2 and "both give 'SimCLR' on CIFAR10" in proc.stderr


def test_table_does_not_merge_seeds_trained_in_another_precision(tmp_path):
    """Seeds 0-1 in bf16 and seed 2 in fp32 were pooled into one cell (precision is a runtime field, free to
    change at resume, yet it changes the numbers); layout and thread count still do not split a configuration."""
    def runs(values):
        return [{"final": {"SimCLR": {"linear": v, "knn": v}}} for v in values]

    config = {"model_name": "SimCLR", "dataset": "Digits", "epochs": 3, "precision": "bf16", "num_threads": 2}
    for name, seeds, cfg in (("bf16", [0, 1], config), ("fp32", [2], {**config, "precision": "fp32"}),
                             ("layout", [3], {**config, "num_threads": 1, "channels_last": True})):
        write_results(tmp_path / name, "SimCLR", "Digits", runs([0.5 + s / 10 for s in seeds]), seeds=seeds)
        (tmp_path / name / "config.json").write_text(json.dumps({**cfg, "seed": seeds[0], "num_runs": len(seeds)}))
    proc = run_cli(["table", str(tmp_path / "bf16"), str(tmp_path / "fp32")])
    assert proc.returncode == 2
    assert "both give 'SimCLR' on Digits (configurations differ in: precision bf16 vs fp32)" in proc.stderr
    proc = run_cli(["table", str(tmp_path / "bf16"), str(tmp_path / "layout")])
    assert proc.returncode == 0, proc.stderr
    assert table_rows(proc.stdout, "Linear probe top-1 (%)")["SimCLR"] == [cell([0.5, 0.6, 0.8])]


def test_table_columns_do_not_depend_on_the_argument_order(tmp_path):
    for name, dataset in (("f", "FashionMNIST"), ("d", "Digits"), ("c", "CIFAR10")):
        write_results(tmp_path / name, "SimCLR", dataset, [{"final": {"SimCLR": {"linear": 0.5, "knn": 0.4}}}])
    outs = [run_cli(["table", *(str(tmp_path / n) for n in order)]) for order in ("fdc", "cdf")]
    assert all(o.returncode == 0 for o in outs), outs[0].stderr
    tables = [o.stdout.split("Sources:")[0] for o in outs]
    assert tables[0] == tables[1]
    assert table_rows(tables[0], "Linear probe top-1 (%)")["header"] == ["CIFAR10", "Digits", "FashionMNIST"]


def test_table_delta_is_paired_per_seed(tmp_path):
    """Δ vs random init = mean ± sample std over seeds of (trained - the same seed's random init), in points;
    experiments of one configuration with disjoint seeds are pooled, as their accuracy is."""
    trained = {"linear": [0.80, 0.83, 0.78], "knn": [0.70, 0.74, 0.69]}
    random = {"linear": [0.75, 0.74, 0.76], "knn": [0.66, 0.65, 0.67]}
    runs = [{"final": {"SimCLR": {m: trained[m][i] for m in trained}},
             "random_init": {"Random init (ResNet18)": {m: random[m][i] for m in random}}} for i in range(3)]
    config = json.dumps({"model_name": "SimCLR", "dataset": "FashionMNIST", "epochs": 2})
    for name, seeds in (("a", [0]), ("b", [1, 2])):
        write_results(tmp_path / name, "SimCLR", "FashionMNIST", runs[seeds[0]:seeds[-1] + 1], seeds=seeds)
        (tmp_path / name / "config.json").write_text(config)
    proc = run_mimax(["table", str(tmp_path / "a"), str(tmp_path / "b")])
    assert proc.returncode == 0, proc.stderr
    for metric, title in (("linear", "Linear probe top-1"), ("knn", "kNN top-1")):
        rows = table_rows(proc.stdout, f"{title}: Δ vs random init (points, per seed: trained − random init)")
        diff = 100 * (np.array(trained[metric]) - np.array(random[metric]))
        assert rows["SimCLR"] == [f"{diff.mean():+.2f} ± {diff.std(ddof=1):.2f}"]
        assert "Random init (ResNet18)" not in rows


def test_table_out_csv_is_one_row_per_cell_with_the_per_seed_values(tmp_path):
    """``--out x.csv`` writes CSV (it used to write the Markdown under a .csv name): n, mean, sample std and
    the per-seed values of every cell, and the paired Δ vs random init, checked against NumPy."""
    trained = {"linear": [0.80, 0.83, 0.78], "knn": [0.70, 0.74, 0.69]}
    random = {"linear": [0.75, 0.74, 0.76], "knn": [0.66, 0.65, 0.67]}
    runs = [{"final": {"SimCLR": {m: trained[m][i] for m in trained}},
             "random_init": {"Random init (ResNet18)": {m: random[m][i] for m in random}}} for i in range(3)]
    write_results(tmp_path / "a", "SimCLR", "CIFAR10", runs, seeds=[0, 1, 2])
    write_results(tmp_path / "b", "BYOL", "CIFAR100", [{"final": {"BYOL": {"linear": 0.5, "knn": 0.4}}}], seeds=[0])
    out = tmp_path / "t.CSV"
    proc = run_cli(["table", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "| SimCLR |" in proc.stdout  # the terminal still gets the Markdown
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    got = {(r["method"], r["dataset"], r["metric"]): r for r in rows}
    assert len(got) == len(rows) == 2 * 3 + 2
    for metric in ("linear", "knn"):
        for label, values in (("SimCLR", trained[metric]), ("Random init (ResNet18)", random[metric])):
            r = got[(label, "CIFAR10", metric)]
            assert int(r["n"]) == 3 and [float(v) for v in r["values"].split(";")] == values
            assert float(r["mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(r["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        diff = np.array(trained[metric]) - np.array(random[metric])
        r = got[("SimCLR", "CIFAR10", f"{metric}_delta_vs_random_init")]
        assert float(r["mean"]) == pytest.approx(diff.mean(), abs=1e-12)
        assert float(r["std"]) == pytest.approx(diff.std(ddof=1), abs=1e-12)
        one = got[("BYOL", "CIFAR100", metric)]
        assert one["n"] == "1" and one["std"] == ""  # one seed: no spread
    md = tmp_path / "t.md"
    assert run_cli(["table", str(tmp_path / "a"), "--out", str(md)]).returncode == 0
    assert md.read_text().startswith("# Top-1 accuracy")


def test_table_pools_a_run_made_before_a_field_existed_with_one_at_its_default(tmp_path):
    """A config.json written before a field was added to mimax lacks it; the run behaved as its default, so it
    pools with a run that records the default, and stays apart from one that sets another value."""
    runs = [{"final": {"SDMI (f_θ)": {"linear": v, "knn": v}}} for v in (0.7, 0.8)]
    older = {"model_name": "SDMI", "dataset": "FashionMNIST", "epochs": 2}
    made = (("old", 0, {}), ("default", 1, {"projector_bn": None}), ("other", 1, {"projector_bn": True}))
    for name, seed, extra in made:
        write_results(tmp_path / name, "SDMI", "FashionMNIST", runs[seed:seed + 1], seeds=[seed])
        (tmp_path / name / "config.json").write_text(json.dumps({**older, **extra}))
    proc = run_mimax(["table", str(tmp_path / "old"), str(tmp_path / "default")])
    assert proc.returncode == 0, proc.stderr
    assert table_rows(proc.stdout, "Linear probe top-1 (%)")["SDMI (f_θ)"] == [cell([0.7, 0.8])]
    proc = run_mimax(["table", str(tmp_path / "old"), str(tmp_path / "other")])
    assert proc.returncode == 2 and "both give 'SDMI (f_θ)' on FashionMNIST" in proc.stderr, proc.stderr


def test_eval_of_a_bf16_image_run_reproduces_its_numbers(tmp_path, cli):
    """A bf16 channels-last ResNet run: `mimax eval` extracts features in the run's precision and memory
    layout, so the re-evaluation gives training's numbers bit for bit."""
    out = tmp_path / "digits"
    proc = run_cli(["train", "--dataset", "Digits", "--model_name", "SimCLR", "--resnet_width", "8", "--epochs", "1",
                    "--warmup_epochs", "0", "--train_subset", "256", "--test_subset", "128", "--batch_size", "64",
                    "--precision", "bf16", "--channels_last", "--num_threads", "1", "--mi_interval", "0",
                    "--mi_critic_interval", "-1", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["precision"] == "bf16"
    proc = cli("eval", str(out), "--device", "cpu", "--num_threads", "1")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "seed_0" / "eval_ckpt_epoch_0001.json").read_text())
    assert record["final"] == json.loads((out / "seed_0" / "results.json").read_text())["final"]


def test_export_and_embed_refuse_an_out_inside_a_run(tmp_path, cli):
    """`mimax export RUN --out RUN/seed_0/checkpoints/ckpt_epoch_0002.pt --overwrite` replaced the run's own
    checkpoint; exports and embeddings go outside run directories too, before anything is read or written."""
    exp = tmp_path / "exp"
    ckpt = exp / "seed_0" / "checkpoints" / "ckpt_epoch_0002.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"the run's checkpoint")
    (tmp_path / "photo.png").write_bytes(b"")
    for command, out in ((["export", str(exp)], ckpt), (["embed", str(tmp_path / "photo.png"), "--run", str(exp)],
                                                        exp / "e.npz")):
        one_line_error(cli(*command, "--out", str(out), "--overwrite"),
                       f"--out: {out} is inside the mimax run {exp}, which holds only what its training wrote")
    assert ckpt.read_bytes() == b"the run's checkpoint" and not (exp / "e.npz").exists()


def test_no_output_goes_into_a_run_through_a_link_or_as_a_new_run(tmp_path, cli, monkeypatch):
    """`ln -s RUN/seed_0 shortcut`, then `table/plot --out shortcut/metrics.csv --overwrite` replaced the run's
    own files (the marker was looked for along the path as given only) and `export --out shortcut/x.pt` wrote
    into it; `train --output_dir RUN/seed_0/inner` (or from inside the run, by the default name) nested a new run
    in a finished one, `analyze`/`demo --output_dir` wrote there: each made the run's --overwrite refuse."""
    exp = tmp_path / "exp"
    assert cli("train", *TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "1", "--mi_interval", "0",
               "--output_dir", str(exp)).returncode == 0
    (tmp_path / "shortcut").symlink_to(exp / "seed_0", target_is_directory=True)
    link = tmp_path / "shortcut"
    before = {p: digest(p) for p in exp.rglob("*") if p.is_file()}
    for command, out in ((["table", str(exp)], link / "metrics.csv"),
                         (["plot", "accuracy", str(exp)], link / "monitors.png"),
                         (["export", str(exp)], link / "x.pt")):
        one_line_error(cli(*command, "--out", str(out), "--overwrite"),
                       f"--out: {out} is inside the mimax run {exp}, which holds only what its training wrote")
    for command, out in ((["train", *TINY_GAUSSIAN, "--epochs", "1"], exp / "seed_0" / "inner"),
                         (["train", *TINY_GAUSSIAN, "--epochs", "1"], link / "inner"),
                         (["analyze", str(exp)], link / "report"),
                         (["demo", "--quick"], exp / "demo")):
        one_line_error(cli(*command, "--output_dir", str(out)), f"--output_dir: {out}",
                       f"is inside the mimax run {exp}, which holds only what its training wrote")
    monkeypatch.chdir(exp / "seed_0")  # the default runs/<name> of a run started from inside another one
    one_line_error(cli("train", *TINY_GAUSSIAN, "--epochs", "1"), f"is inside the mimax run {exp}")
    monkeypatch.chdir(tmp_path)
    assert {p: digest(p) for p in exp.rglob("*") if p.is_file()} == before
    assert cli("train", "--output_dir", str(exp), "--overwrite", *TINY_GAUSSIAN, "--epochs", "1").returncode == 0


def test_eval_uses_the_thread_count_training_ran_on_when_none_was_given(tmp_path):
    """A run trained without --num_threads (torch's default, e.g. OMP_NUM_THREADS=2) records it in env.json only;
    `mimax eval` used the current default instead, and its probe differed in the third digit from the recorded
    one. Here training ran on 2 threads and eval starts on 1: it evaluates on 2."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = tmp_path / "run"
        assert main(["train", "--dataset", "Gaussian", "--gm_train_size", "256", "--gm_test_size", "128",
                     "--gm_monitor_size", "64", "--mi_interval", "0", "--epochs", "1", "--model_name", "SimCLR",
                     "--output_dir", str(out)]) == 0
        assert json.loads((out / "config.json").read_text())["num_threads"] is None
        torch.set_num_threads(1)
        assert main(["eval", str(out), "--device", "cpu"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
