"""The Python API (docs/api.md): the page's script runs as it stands; ``mimax.train`` returns what the
run directory holds; ``Config.from_flags`` equals keyword construction; mistakes are UserErrors."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

import mimax
from conftest import ROOT
from mimax.errors import UserError


def test_the_api_page_script_runs(tmp_path):
    text = (ROOT / "docs" / "api.md").read_text()
    code = re.search(r"```python\n# api_demo.py\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    (tmp_path / "api_demo.py").write_text(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "api_demo.py"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "runs" / "api_demo" / "results.json").read_text())["summary"]
    printed, infonce = proc.stdout.strip().splitlines()[-2:]
    shown = eval(printed, {"nan": float("nan")})  # noqa: S307 - the dict our own script printed
    want = summary["SimCLR"]["linear"]
    assert shown["mean"] == want["mean"] and shown["n"] == want["n"] == 1 and shown["values"] == want["values"]
    assert 4 < float(infonce) <= math.log(512)  # dependent views; InfoNCE never exceeds log N


def test_train_returns_the_results_and_from_flags_matches_keywords(tmp_path):
    flags = (f"--model_name BYOL --dataset Gaussian --epochs 2 --gm_train_size 512 --gm_test_size 256 "
             f"--gm_monitor_size 256 --batch_size 64 --output_dir {tmp_path / 'byol'}")
    cfg = mimax.Config.from_flags(flags)
    assert cfg == mimax.Config(model_name="BYOL", dataset="Gaussian", epochs=2, gm_train_size=512, gm_test_size=256,
                               gm_monitor_size=256, batch_size=64, output_dir=str(tmp_path / "byol"))
    assert cfg.ema_momentum is None  # unset: the preset fills it when training starts
    results = mimax.train(cfg)
    on_disk = json.loads((tmp_path / "byol" / "results.json").read_text())
    assert results["status"] == "complete" and results["output_dir"] == str(tmp_path / "byol")
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731 (NaN std)
    assert same(results["summary"], on_disk["summary"]) and same(results["runs"], on_disk["runs"])
    saved = json.loads((tmp_path / "byol" / "config.json").read_text())
    assert saved["ema_momentum"] == 0.9 and saved["epochs"] == 2  # presets filled, given values kept
    part = mimax.train(model_name="SimCLR", dataset="Gaussian", epochs=2, stop_after=1, gm_train_size=512,
                       gm_test_size=256, gm_monitor_size=256, batch_size=64, output_dir=str(tmp_path / "part"))
    assert part == {"status": "incomplete", "output_dir": str(tmp_path / "part")}
    done = mimax.train(mimax.Config(resume=str(tmp_path / "part"), stop_after=5))
    assert done["status"] == "complete" and [r["seed"] for r in done["runs"]] == [0]


def test_mistakes_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="--epochs: must be >= 1"):
        mimax.train(dataset="Gaussian", epochs=0, output_dir=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    with pytest.raises(UserError, match="unrecognized arguments: --epoch"):
        mimax.Config.from_flags("--epoch 3")
    with pytest.raises(TypeError):
        mimax.train(mimax.Config(), epochs=3)


def test_a_mapping_and_misnamed_fields_give_user_errors_before_anything_is_created(tmp_path):
    """A dict (``json.load`` of a config.json) was a TypeError from dataclasses; ``unused=[...]`` (the record a
    saved config holds) a TypeError from isinstance; an unknown keyword Config's own TypeError."""
    out = tmp_path / "x"
    for kwargs, message in ((dict(foo=1), "foo: not a field of mimax.Config (a user method's own options go in "
                                          "method_options={...})"),
                            (dict(epoch=3), "epoch: not a field of mimax.Config (did you mean epochs?)"),
                            (dict(unused="temperature"), "unused: expected the list of flag names a run records")):
        with pytest.raises(UserError, match=re.escape(message)):
            mimax.train(dataset="Gaussian", output_dir=str(out), **kwargs)
        with pytest.raises(UserError, match=re.escape(message)):
            mimax.train({"dataset": "Gaussian", "output_dir": str(out), **kwargs})
    assert not out.exists()
    with pytest.raises(TypeError, match="a mimax.Config or a mapping of its fields, got str"):
        mimax.train("--epochs 3")


def test_a_saved_config_trains_the_same_run_again_through_the_api_and_as_config(tmp_path, capsys):
    """A run's config.json (it records ``unused`` and ``method_options``, which are not flags) was refused as
    ``--config`` ("unknown key(s) method_options, unused") and as a mapping by ``mimax.train``."""
    from mimax.cli import main

    tiny = ["--dataset", "Gaussian", "--epochs", "1", "--gm_train_size", "256", "--gm_test_size", "128",
            "--gm_monitor_size", "64", "--batch_size", "64", "--num_threads", "1"]
    assert main(["train", "--model_name", "BYOL", "--temperature", "0.3", *tiny,
                 "--output_dir", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["unused"] == ["temperature"]  # the case that was refused
    assert main(["train", "--config", str(tmp_path / "a" / "config.json"), "--output_dir", str(tmp_path / "b")]) == 0
    with pytest.warns(UserWarning, match="--temperature is not read by BYOL"):
        again = mimax.train({**saved, "output_dir": str(tmp_path / "c")})
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    for other in ("b", "c"):
        config = json.loads((tmp_path / other / "config.json").read_text())
        assert {k: v for k, v in config.items() if k != "output_dir"} == {
            k: v for k, v in saved.items() if k != "output_dir"}
        assert json.loads((tmp_path / other / "results.json").read_text())["summary"] == results["summary"]
    assert again["summary"] == results["summary"]


def test_building_blocks_are_importable_with_their_equations():
    for fn in (mimax.bounds.dv_bound, mimax.bounds.infonce_bound, mimax.bounds.jsd_bound,
               mimax.objectives.nt_xent_loss, mimax.objectives.dv_objective):
        assert re.search(r"``[^`]*=[^`]*``", fn.__doc__), fn.__name__  # an equation, in the docstring
    assert mimax.monitors.MIMonitor and mimax.monitors.CollapseMonitor
    assert issubclass(mimax.methods.METHODS["BYOL"], mimax.SelfDistillationMethod)
    assert issubclass(mimax.methods.METHODS["SimCLR"], mimax.JointMethod)


def test_train_gives_the_callers_thread_count_back(tmp_path):
    """``num_threads`` is the run's: a later run without it in the same process trained on the first one's
    threads (different numbers from the CLI's, and than `mimax eval` reproduces)."""
    import torch

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    mimax.train(model_name="SimCLR", dataset="Gaussian", epochs=1, gm_train_size=256, gm_test_size=128,
                gm_monitor_size=64, mi_interval=0, num_threads=target, output_dir=str(tmp_path / "r"), progress=False)
    assert torch.get_num_threads() == before
