"""User methods without forking (docs/extending.md): the two worked examples, extracted from the page,
trained end to end; import paths (file and module), entry points of an installed package (a real
``.dist-info`` on disk), every command on a user method's run, and the one-line errors."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY_GAUSSIAN
from mimax.cli import main
from mimax.config import resolve
from mimax.methods import build_method

EXAMPLE_RE = re.compile(r"```python\n# my_methods/(\w+)\.py\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    text = (ROOT / "docs" / "extending.md").read_text()
    return {name: code for name, code in EXAMPLE_RE.findall(text)}


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """``tmp_path/my_methods/`` holding the page's examples (a package too: it has ``__init__.py``)."""
    pkg = tmp_path / "my_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, code in examples().items():
        (pkg / f"{name}.py").write_text(code)
    return tmp_path


def mimax_proc(args: list[str], cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    path = [str(ROOT / "src")] + ([str(extra_path)] if extra_path else [])
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "mimax", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_worked_examples_are_short_and_present():
    found = examples()
    assert set(found) == {"jsd_jmi", "sd_bound"}
    for name, code in found.items():
        assert len([line for line in code.splitlines() if line.strip()]) <= 20, name


def jsd_reference(u: np.ndarray, v: np.ndarray, tau: float) -> float:
    """I_JSD of the cosine critic, with loops (Deep InfoMax's estimator)."""
    n = len(u)
    un = u / np.linalg.norm(u, axis=1, keepdims=True)
    vn = v / np.linalg.norm(v, axis=1, keepdims=True)
    s = [[float(un[i] @ vn[j]) / tau for j in range(n)] for i in range(n)]
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    joint = sum(-sp(-s[i][i]) for i in range(n)) / n
    marg = sum(sp(s[i][j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return joint - marg


def infonce_reference(u: np.ndarray, v: np.ndarray, tau: float) -> float:
    n = len(u)
    un = u / np.linalg.norm(u, axis=1, keepdims=True)
    vn = v / np.linalg.norm(v, axis=1, keepdims=True)
    total = 0.0
    for i in range(n):
        row = [float(un[i] @ vn[j]) / tau for j in range(n)]
        total += row[i] - math.log(sum(math.exp(x) for x in row))
    return math.log(n) + total / n


def test_example_objectives_match_independent_references(user_dir):
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    tu, tv = torch.tensor(u, dtype=torch.float32), torch.tensor(v, dtype=torch.float32)
    sd = f"{user_dir}/my_methods/sd_bound.py:SDBound"
    for given, reference, symmetric in (
            ({"model_name": f"{user_dir}/my_methods/jsd_jmi.py:JSDJMI"}, jsd_reference, True),
            ({"model_name": sd}, infonce_reference, False),
            ({"model_name": sd, "method_options": {"bound": "JSD"}}, jsd_reference, False)):
        cfg = resolve({**given, "temperature": 0.3, "dataset": "Gaussian"})
        method = build_method(cfg, (16,))
        terms = method.objective(tu, tv)
        want = (reference(u, v, 0.3) + reference(v, u, 0.3)) / 2 if symmetric else reference(u, v, 0.3)
        assert terms["loss"].item() == pytest.approx(-want, rel=1e-5, abs=1e-6)


def test_user_methods_train_resume_and_work_with_every_command(user_dir, tmp_path, capsys):
    jsd = "my_methods/jsd_jmi.py:JSDJMI"  # relative to user_dir: recorded as an absolute path
    out = tmp_path / "runs" / "jsd"
    args = [*TINY_GAUSSIAN, "--model_name", jsd, "--epochs", "2", "--num_runs", "2", "--output_dir", str(out)]
    first = mimax_proc(["train", *args, "--stop_after", "1"], cwd=user_dir)
    assert first.returncode == 0, first.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_name"] == f"{user_dir}/my_methods/jsd_jmi.py:JSDJMI"
    resumed = mimax_proc(["train", "--resume", str(out), "--stop_after", "4"], cwd=ROOT)  # another directory
    assert resumed.returncode == 0, resumed.stderr
    metrics = rows(out / "seed_0" / "metrics.csv")
    assert [int(r["epoch"]) for r in metrics] == [1, 2]
    for r in metrics:  # the objective's own terms are logged: loss = -jsd
        assert float(r["loss"]) == pytest.approx(-float(r["jsd"]), rel=1e-6)
    results = json.loads((out / "results.json").read_text())
    assert "JSDJMI" in results["summary"] and results["summary"]["JSDJMI"]["linear"]["n"] == 2
    # eval, table, export, plot, methods: in this process, as the CLI entry point
    for argv in (["eval", str(out)], ["table", str(out)], ["export", str(out), "--out", str(tmp_path / "b.pt")],
                 ["plot", "mi", str(out), "--out", str(tmp_path / "mi.png")],
                 ["analyze", str(out), "--output_dir", str(tmp_path / "an")], ["methods", saved["model_name"]]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, (argv, captured.err)
    assert "JSDJMI" in captured.out and "joint" in captured.out and "--temperature 0.1" in captured.out
    assert main(["methods", f"{user_dir}/my_methods/sd_bound.py:SDBound"]) == 0
    listing = capsys.readouterr().out
    assert "SDBound" in listing and "--bound InfoNCE  MI bound maximized" in listing
    assert (tmp_path / "b.pt.json").is_file() and (tmp_path / "mi.png").is_file()
    report = json.loads((tmp_path / "an" / "analysis.json").read_text())  # the user method's run, analyzed
    assert "JSDJMI" in report["model"] and report["dataset"] == "Gaussian"
    assert {"embedding", "backbone"} <= set(report["representations"])
    emb = report["representations"]["embedding"]
    assert emb["mi_infonce_low"] <= emb["mi_infonce"] <= emb["mi_infonce_high"] and emb["rankme"] >= 1
    assert 0 <= report["probe"]["linear"] <= 1
    # the self-distillation example, as a module on the path, with its own option as a flag
    sd = mimax_proc(["train", *TINY_GAUSSIAN, "--model_name", "my_methods.sd_bound:SDBound", "--bound", "JSD",
                     "--epochs", "1", "--output_dir", str(tmp_path / "runs" / "sd")], cwd=tmp_path, extra_path=user_dir)
    assert sd.returncode == 0, sd.stderr
    saved_sd = json.loads((tmp_path / "runs" / "sd" / "config.json").read_text())
    assert saved_sd["method_options"] == {"bound": "JSD"} and saved_sd["ema_momentum"] == 0.99
    assert rows(tmp_path / "runs" / "sd" / "seed_0" / "metrics.csv")[0]["mi"]
    analyzed = mimax_proc(["analyze", str(tmp_path / "runs" / "sd"), "--output_dir", str(tmp_path / "an_sd")],
                          cwd=tmp_path, extra_path=user_dir)  # a self-distillation user method: its f_theta
    assert analyzed.returncode == 0, analyzed.stderr
    report = json.loads((tmp_path / "an_sd" / "analysis.json").read_text())
    assert "SDBound" in report["model"] and "embedding" in report["representations"]
    bad = mimax_proc(["train", *TINY_GAUSSIAN, "--model_name", "my_methods.sd_bound:SDBound", "--bound", "MINE",
                      "--output_dir", str(tmp_path / "runs" / "bad")], cwd=tmp_path, extra_path=user_dir)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "mimax: error: --bound: expected one of cos-DV, InfoNCE, JSD (got 'MINE')")
    assert not (tmp_path / "runs" / "bad").exists()
    unread = mimax_proc(["train", *TINY_GAUSSIAN, "--model_name", jsd, "--ema_momentum", "0.9",
                         "--output_dir", str(tmp_path / "runs" / "unread")], cwd=user_dir)
    assert unread.returncode == 2 and "--ema_momentum: JSDJMI does not read it" in unread.stderr
    # the method's file is gone: resume and eval (in a new process) say so in one line
    (user_dir / "my_methods" / "jsd_jmi.py").rename(user_dir / "my_methods" / "moved.py")
    for argv, fragment in ((["train", "--resume", str(out)], "--resume: the run in"),
                           (["eval", str(out), "--overwrite"], "the run's method")):
        proc = mimax_proc(argv, cwd=tmp_path)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and fragment in err[0] and "jsd_jmi.py not found" in err[0], err


def test_a_user_copy_of_simclr_trains_exactly_like_the_builtin(tmp_path):
    (tmp_path / "copy.py").write_text(
        "from mimax import JointMethod\nfrom mimax.objectives import nt_xent_loss\n"
        "from mimax.paradigms import TemperatureOptions\n\n\n"
        "class MySimCLR(JointMethod):\n    Options = TemperatureOptions\n\n    def objective(self, z_a, z_b):\n"
        "        return nt_xent_loss(z_a, z_b, self.options.temperature)\n")
    losses = {}
    for name in ("SimCLR", f"{tmp_path}/copy.py:MySimCLR"):
        out = tmp_path / name.rpartition(":")[2]
        assert main(["train", *TINY_GAUSSIAN, "--model_name", name, "--epochs", "2", "--mi_interval", "0",
                     "--output_dir", str(out)]) == 0
        losses[name] = [r["loss"] for r in rows(out / "seed_0" / "metrics.csv")]
    assert losses["SimCLR"] == losses[f"{tmp_path}/copy.py:MySimCLR"]  # bitwise: same text in the CSV


def test_entry_point_of_an_installed_package(tmp_path, user_dir):
    """An installed distribution is a ``.dist-info`` directory on the path with ``entry_points.txt``."""
    dist = user_dir / "my_methods-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-methods\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mimax.methods]\nJSDJMI = my_methods.jsd_jmi:JSDJMI\n"
                                           "Broken = my_methods.nowhere:X\n")
    listed = mimax_proc(["methods"], cwd=tmp_path, extra_path=user_dir)
    # a broken plugin is named in one warning line; the built-in methods and the working plugin are still listed
    assert listed.returncode == 0, listed.stderr
    assert [line for line in listed.stderr.splitlines() if line.strip()] == [
        "mimax: warning: entry point 'Broken' (my_methods.nowhere:X) cannot be loaded (ModuleNotFoundError: "
        "No module named 'my_methods.nowhere'); not listed"]
    assert {"SDMI", "JSDJMI"} <= {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    (dist / "entry_points.txt").write_text("[mimax.methods]\nJSDJMI = my_methods.jsd_jmi:JSDJMI\n")
    listed = mimax_proc(["methods"], cwd=tmp_path, extra_path=user_dir)
    assert listed.returncode == 0 and any(line.startswith("JSDJMI ") for line in listed.stdout.splitlines())
    out = tmp_path / "runs" / "ep"
    run = mimax_proc(["train", *TINY_GAUSSIAN, "--model_name", "JSDJMI", "--epochs", "1", "--output_dir", str(out)],
                     cwd=tmp_path, extra_path=user_dir)
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "config.json").read_text())["model_name"] == "JSDJMI"


@pytest.mark.parametrize("spec,fragment", [
    ("no_such_pkg.methods:X", "cannot import module 'no_such_pkg.methods' (no module named 'no_such_pkg')"),
    ("{d}/missing.py:X", "missing.py not found"),
    ("{d}/bad.py:X", "(SyntaxError: "),
    ("{d}/ok.py:Nope", "has no class 'Nope'"),
    ("{d}/ok.py:helper", "is a function, not a method: subclass mimax.JointMethod or mimax.SelfDistillationMethod"),
    ("{d}/ok.py:NotAMethod", "is a class NotAMethod, not a method"),
    ("mimax.paradigms:JointMethod", "is a class JointMethod, not a method"),
    # a paradigm subclass that declares nothing used to train until its first step raised NotImplementedError
    ("{d}/ok.py:NoObjective", "ok.py:NoObjective declares no objective: define objective(self, z_a, z_b) returning "
                              "a dict with the 'loss' to minimize (docs/extending.md)"),
    ("{d}/ok.py:NoObjectiveSD", "declares no objective: define objective(self, p, z)"),
    ("NoSuchMethod", "unknown method 'NoSuchMethod'; expected one of SDMI"),
])
def test_bad_model_names_are_one_line_errors(tmp_path, capsys, spec, fragment):
    (tmp_path / "bad.py").write_text("def broken(:\n")
    (tmp_path / "ok.py").write_text("import torch\n\nfrom mimax import JointMethod, SelfDistillationMethod\n\n\n"
                                    "def helper():\n    pass\n\n\n"
                                    "class NotAMethod(torch.nn.Module):\n    pass\n\n\n"
                                    "class NoObjective(JointMethod):\n    pass\n\n\n"
                                    "class NoObjectiveSD(SelfDistillationMethod):\n    pass\n")
    out = tmp_path / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", spec.format(d=tmp_path), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mimax: error: --model_name: ") and fragment in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_user_method_under_torchrun(user_dir, tmp_path):
    """Two processes (gloo, CPU): every rank imports the method from its file."""
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "main.py",
           *TINY_GAUSSIAN, "--model_name", f"{user_dir}/my_methods/sd_bound.py:SDBound", "--epochs", "1",
           "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "seed_0" / "env.json").read_text())["world_size"] == 2
    assert "SDBound" in json.loads((out / "results.json").read_text())["summary"]


def test_a_method_with_its_own_training_loss_needs_no_objective():
    """The objective check refuses only a class that declares neither (the paradigm's step calls objective)."""
    from mimax import JointMethod
    from mimax.methods.registry import MethodNotFound, check_method_class

    class OwnStep(JointMethod):
        def training_loss(self, x_a, x_b, step):
            return {"loss": (self.encoder(x_a) - self.encoder(x_b)).pow(2).mean()}

    class Nothing(JointMethod):
        pass

    assert check_method_class(OwnStep, "OwnStep") is OwnStep
    with pytest.raises(MethodNotFound, match="Nothing declares no objective"):
        check_method_class(Nothing, "Nothing")


def test_an_ema_target_needs_its_momentum_option():
    """SelfDistillationMethod's default rule is 'ema', whose momentum is an option: a method that declares
    neither failed with an AttributeError traceback on its first step."""
    from mimax import SelfDistillationMethod
    from mimax.methods.registry import MethodNotFound, check_method_class

    class Ema(SelfDistillationMethod):
        def objective(self, p, z):
            return {"loss": -(p * z).sum(1).mean()}

    class Copy(Ema):
        rule = "copy"

    with pytest.raises(MethodNotFound, match="Ema updates its target by EMA .* declare no ema_momentum"):
        check_method_class(Ema, "Ema")
    assert check_method_class(Copy, "Copy") is Copy


WRONG_OBJECTIVES = '''import torch
from mimax import JointMethod, SelfDistillationMethod


class NoLoss(JointMethod):
    def objective(self, z_a, z_b):
        return {"total": (z_a - z_b).pow(2).mean()}


class PerSample(JointMethod):
    def objective(self, z_a, z_b):
        return {"loss": (z_a - z_b).pow(2).mean(1)}


class BareTensor(JointMethod):
    def objective(self, z_a, z_b):
        return (z_a - z_b).pow(2).mean()


class Constant(SelfDistillationMethod):
    rule = "copy"

    def objective(self, p, z):
        return {"loss": torch.tensor(1.0)}


class FloatTerm(JointMethod):
    def objective(self, z_a, z_b):
        return {"loss": (z_a - z_b).pow(2).mean(), "gap": 0.5}


class LrTerm(JointMethod):
    def objective(self, z_a, z_b):
        loss = (z_a - z_b).pow(2).mean()
        return {"loss": loss, "lr": loss.detach()}
'''


@pytest.mark.parametrize("name,what", [
    ("NoLoss", "a dict with keys ['total']"),
    ("PerSample", "'loss' of shape (64,)"),
    ("BareTensor", "a Tensor"),
    ("Constant", "a 'loss' without a gradient (it does not depend on the embeddings it was given: computed from "
                 "constants, or detached)"),
    ("FloatTerm", "'gap' as a float"),
    # it overwrote metrics.csv's lr column (a term "epoch" made the run impossible to resume)
    ("LrTerm", "a term named 'lr', a column metrics.csv writes itself (epoch, epoch_time_s, gpu_mem_peak_gb, "
               "images_per_s, lr, skipped_steps, step): rename it"),
])
def test_an_objective_that_breaks_the_contract_is_one_line_and_leaves_nothing(tmp_path, capsys, name, what):
    """These trained until a KeyError, IndexError or autograd RuntimeError traceback in the loop."""
    (tmp_path / "wrong.py").write_text(WRONG_OBJECTIVES)
    out = tmp_path / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", f"{tmp_path / 'wrong.py'}:{name}", "--epochs", "1",
                 "--output_dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mimax: error: {name}.objective returned {what}; an objective returns a dict of 0-d tensors with the "
        "'loss' to minimize (docs/extending.md)")
    assert not out.exists()
    out.mkdir()  # a folder that existed, empty: it stays empty (the run's lock file was left in it)
    assert main(["train", *TINY_GAUSSIAN, "--model_name", f"{tmp_path / 'wrong.py'}:{name}", "--epochs", "1",
                 "--output_dir", str(out)]) == 2
    assert list(out.iterdir()) == []


CLASS_MISTAKES = '''from dataclasses import dataclass

import torch
from mimax import JointMethod, SelfDistillationMethod
from mimax.paradigms import MethodOptions, option


class PredNoDim(SelfDistillationMethod):
    rule = "copy"
    has_predictor = True

    def objective(self, p, z):
        return {"loss": -torch.nn.functional.cosine_similarity(p, z).mean()}


class BadRule(PredNoDim):
    has_predictor = False
    rule = "emaa"


class BadReduction(BadRule):
    rule = "copy"
    reduction = "max"


@dataclass(frozen=True)
class ConfigOption(MethodOptions):
    config: str = option("x", "an option named like the --config flag", "me")


class ConfigOpt(JointMethod):
    Options = ConfigOption

    def objective(self, z_a, z_b):
        return {"loss": (z_a - z_b).pow(2).mean()}


@dataclass(frozen=True)
class Switch(MethodOptions):
    flag_on: bool = option(True, "a switch", "me")
    weight: float = option(1.0, "a weight", "me")


class Switched(JointMethod):
    Options = Switch

    def objective(self, z_a, z_b):
        """Squared distance, times the weight."""
        loss = (z_a - z_b).pow(2).mean() * (self.options.weight if self.options.flag_on else 2.0)
        return {"loss": loss}


@dataclass(frozen=True)
class RuleOption(MethodOptions):
    target_update: str = option("alternate", "how g_ξ follows f_θ, as SDMI's option", "me")


class RuleOpt(SelfDistillationMethod):
    Options = RuleOption

    def objective(self, p, z):
        return {"loss": -torch.nn.functional.cosine_similarity(p, z).mean()}


@dataclass(frozen=True)
class MomentumOnly(MethodOptions):
    ema_momentum: float = option(0.99, "base EMA momentum m_0", "me")


class EmaNoRuleOption(SelfDistillationMethod):
    Options = MomentumOnly

    def objective(self, p, z):
        return {"loss": -torch.nn.functional.cosine_similarity(p, z).mean()}


@dataclass(frozen=True)
class NotMethodOptions:
    weight: float = 1.0


class PlainOptions(JointMethod):
    Options = NotMethodOptions

    def objective(self, z_a, z_b):
        return {"loss": (z_a - z_b).pow(2).mean()}
'''


@pytest.mark.parametrize("name,message", [
    # an AttributeError traceback at the first step; accepted silently (trained as copy, or as "mean"); an
    # argparse traceback ("conflicting option string")
    ("PredNoDim", "has a predictor but its Options declare no predictor_dim"),
    ("BadRule", "declares rule = 'emaa'; expected one of alternate, ema, copy"),
    ("BadReduction", "declares reduction = 'max'; expected one of mean, sum"),
    ("ConfigOpt", "the method declares an option 'config', but --config is a flag of mimax train itself"),
])
def test_class_declarations_are_checked_in_one_line(tmp_path, capsys, name, message):
    (tmp_path / "decl.py").write_text(CLASS_MISTAKES)
    out = tmp_path / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", f"{tmp_path / 'decl.py'}:{name}", "--epochs", "1",
                 "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimax: error: ") and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_the_ema_note_advice_is_accepted_by_the_example_method(user_dir, tmp_path, capsys):
    """docs/extending.md's SDBound was told to give --ema_min_time_constants 0 and then refused it."""
    model = f"{user_dir}/my_methods/sd_bound.py:SDBound"
    base = ["train", *TINY_GAUSSIAN, "--model_name", model, "--epochs", "1"]
    assert main([*base, "--output_dir", str(tmp_path / "a")]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "EMA target" in line)
    assert "m_0 = 0.9 (--ema_momentum 0.99 lowered" in note and "give --ema_min_time_constants 0 to keep 0.99" in note
    assert main([*base, "--ema_min_time_constants", "0", "--output_dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "note: EMA target: m_0 = 0.99, " in out and "lowered" not in out
    assert json.loads((tmp_path / "b" / "config.json").read_text())["ema_min_time_constants"] == 0


def test_an_ema_method_without_the_rule_option_is_told_how_to_declare_it(tmp_path, capsys):
    """It gets the short-run rule's default; its note names the declaration, not a flag the method refuses."""
    (tmp_path / "decl.py").write_text(CLASS_MISTAKES)
    model = f"{tmp_path / 'decl.py'}:EmaNoRuleOption"
    note = build_method(resolve({"model_name": model, "dataset": "Gaussian"}), (16,)).notes(10)[0]
    assert note.endswith("EmaNoRuleOption's Options do not declare it, so the default applies: add "
                         "ema_min_time_constants: float = ema_min_time_constants_option() (from mimax.paradigms) to "
                         "make it a flag, then give --ema_min_time_constants 0 to keep 0.99)"), note
    assert main(["train", *TINY_GAUSSIAN, "--model_name", model, "--ema_min_time_constants", "0",
                 "--output_dir", str(tmp_path / "run")]) == 2
    assert "--ema_min_time_constants: EmaNoRuleOption does not read it" in capsys.readouterr().err


@pytest.mark.parametrize("value,message", [
    # an AttributeError traceback (exit 1) from the EMA note; trained silently as copy, recording "foo"
    ("ema", "--target_update: ema needs the option ema_momentum, which RuleOpt's Options do not declare: add "
            "ema_momentum: float = option(0.99, ...) as BYOL does, or choose alternate or copy (docs/extending.md)"),
    ("foo", "--target_update: expected alternate, ema or copy (got 'foo')"),
])
def test_a_user_target_update_option_is_checked_before_anything_is_created(tmp_path, capsys, value, message):
    (tmp_path / "decl.py").write_text(CLASS_MISTAKES)
    out = tmp_path / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", f"{tmp_path / 'decl.py'}:RuleOpt", "--target_update", value,
                 "--epochs", "1", "--output_dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"mimax: error: {message}"
    assert not out.exists()


def test_options_that_are_not_method_options_are_one_line_in_train_and_methods(tmp_path, capsys):
    """An ``Options`` dataclass that does not subclass MethodOptions was an AttributeError traceback ('names')."""
    (tmp_path / "decl.py").write_text(CLASS_MISTAKES)
    model, out = f"{tmp_path / 'decl.py'}:PlainOptions", tmp_path / "run"
    message = (f"{model} declares Options = NotMethodOptions, which does not subclass mimax.paradigms.MethodOptions: "
               "declare @dataclass(frozen=True) class MyOptions(MethodOptions)")
    assert main(["train", *TINY_GAUSSIAN, "--model_name", model, "--epochs", "1", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mimax: error: --model_name: {message}") and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert main(["methods", model]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mimax: error: {model}: {message}") and len(err.splitlines()) == 1, err


def test_user_options_through_flags_and_the_python_api_are_checked_alike(tmp_path, capsys):
    import mimax

    (tmp_path / "decl.py").write_text(CLASS_MISTAKES)
    model = f"{tmp_path / 'decl.py'}:Switched"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", model, "--epochs", "1", "--no_flag_on",  # as --no_labels
                 "--output_dir", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["method_options"]["flag_on"] is False
    # the saved config given back: its method_options are the method's flags again (refused as an unknown key)
    assert main(["train", "--config", str(tmp_path / "a" / "config.json"), "--output_dir", str(tmp_path / "a2")]) == 0
    assert json.loads((tmp_path / "a2" / "config.json").read_text())["method_options"] == {"flag_on": False,
                                                                                          "weight": 1.0}
    (tmp_path / "twice.yaml").write_text(f"model_name: {model}\nflag_on: true\nmethod_options: {{flag_on: false}}\n")
    assert main(["train", "--config", str(tmp_path / "twice.yaml"), "--output_dir", str(tmp_path / "a3")]) == 2
    assert "flag_on is given both at the top level and in method_options" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["methods", model]) == 0
    assert "Squared distance, times the weight." in capsys.readouterr().out  # not the paradigm's docstring
    base = dict(model_name=model, dataset="Gaussian", epochs=1, output_dir=str(tmp_path / "b"))
    # each was accepted (a typo ignored, a string for a bool read as True) or a TypeError from validation
    for kwargs, message in ((dict(method_options={"wieght": 2.0}), "--wieght: Switched has no option 'wieght'"),
                            (dict(method_options={"flag_on": "no"}), "--flag_on: expected bool, got 'no'"),
                            (dict(method_options={"temperature": 0.5}), "--temperature: a field of the configuration"),
                            (dict(epochs="1"), "--epochs: expected int, got '1'")):
        with pytest.raises(mimax.errors.ConfigError, match=re.escape(message)):
            mimax.train(**{**base, **kwargs})
        assert not (tmp_path / "b").exists()
    result = mimax.train(**base, method_options={"weight": 2}, data_dir=None)  # an int for a float is widened
    assert result["status"] == "complete"
    assert json.loads((tmp_path / "b" / "config.json").read_text())["method_options"]["weight"] == 2.0


def test_resume_knows_the_user_methods_own_flags(tmp_path, capsys):
    """On ``--resume RUN`` the run's method (its config.json) makes its own options flags, as ``--model_name``
    does: they were "unrecognized arguments". The recorded value is accepted, another refused, as a built-in's."""
    (tmp_path / "decl.py").write_text(CLASS_MISTAKES)
    out = tmp_path / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", f"{tmp_path / 'decl.py'}:Switched", "--weight", "2",
                 "--epochs", "2", "--stop_after", "1", "--output_dir", str(out)]) == 0
    capsys.readouterr()
    ckpt = out / "seed_0" / "checkpoints" / "ckpt_epoch_0001.pt"
    for where, argv, changed in ((out, ["--weight", "3"], "weight=2.0; resuming with 3.0"),
                                 (ckpt, ["--weight", "3"], "weight=2.0; resuming with 3.0"),
                                 (out, ["--weight", "2", "--no_flag_on"], "flag_on=True; resuming with False")):
        assert main(["train", "--resume", str(where), *argv]) == 2
        flag = changed.partition("=")[0]
        assert capsys.readouterr().err.strip() == (
            f"mimax: error: --{flag}: the run in {out} was trained with {changed} is refused")
    assert main(["train", "--resume", str(out), "--weight", "2", "--flag_on"]) == 0
    assert [int(r["epoch"]) for r in rows(out / "seed_0" / "metrics.csv")] == [1, 2]
