"""Figure 2 (`mimax plot mi`): the figure's panels and lines, and the command end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import TINY_GAUSSIAN, run_mimax
from mimax.bounds import BOUNDS
from mimax.cli import main
from mimax.errors import UserError
from mimax.plots import FAMILIES, MICurves, _styles, load_mi_curves, plot_mi


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for method in ("JMI", "SimCLR"):
        assert main(["train", *TINY_GAUSSIAN, "--model_name", method, "--epochs", "2", "--mi_interval", "1",
                     "--mi_batch_size", "128", "--output_dir", str(root / method)]) == 0
    return root / "JMI", root / "SimCLR"


def test_figure_has_one_panel_per_estimator_and_one_line_per_method(two_runs):
    fig = plot_mi(list(two_runs))
    titles = [ax.get_title() for ax in fig.axes]
    for est in BOUNDS:
        assert est in titles and f"{est}: MI gap (paired - shuffled)" in titles
    assert "normalized-embedding std (0 = collapse)" in titles
    by_title = {ax.get_title(): ax for ax in fig.axes}
    for est in BOUNDS:
        labelled = [line.get_label() for line in by_title[est].get_lines() if not line.get_label().startswith("_")]
        assert [lab for lab in labelled if not lab.startswith("ceiling")] == ["JMI", "SimCLR"]
        np.testing.assert_array_equal(by_title[est].get_lines()[0].get_xdata(), [0, 1, 2])
    assert by_title["cos-DV"].get_ylabel() == "nats" and by_title["InfoNCE"].get_ylabel() == "nats"
    assert "not nats" in by_title["JSD"].get_ylabel()
    ceilings = [line for line in by_title["InfoNCE"].get_lines() if line.get_label().startswith("ceiling")]
    assert len(ceilings) == 1 and np.allclose(ceilings[0].get_ydata(), math.log(128))
    assert not any(line.get_label().startswith("ceiling") for line in by_title["cos-DV"].get_lines())


def test_figure_values_are_the_csv_values(two_runs):
    curves = load_mi_curves(two_runs[0])
    import csv

    with open(two_runs[0] / "seed_0" / "mi.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["representation"] == "embedding" and r["estimator"] == "JSD"]
    assert curves.method == "JMI" and curves.paradigm == "joint"
    np.testing.assert_allclose(curves.series["JSD"]["value"][0], [float(r["value"]) for r in rows])
    np.testing.assert_allclose(curves.series["JSD"]["gap"][0], [float(r["gap"]) for r in rows])


def test_paradigm_families_are_drawn_apart():
    def fake(paradigm):
        return MICurves(label="m", source="d", method="m", paradigm=paradigm, tau_est=0.1, epochs=np.arange(2))

    runs = [fake("self-distillation"), fake("self-distillation"), fake("joint")]
    (s1, c1), (s2, c2), (s3, _) = _styles(runs)
    assert s1 == s2 == FAMILIES["self-distillation"][1] and s3 == FAMILIES["joint"][1] and s1 != s3
    assert c1 != c2  # methods within a family still differ by colour


def test_bad_run_dirs_are_one_line_errors(tmp_path, two_runs):
    with pytest.raises(UserError, match="not a directory"):
        load_mi_curves(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no mi.csv"):
        load_mi_curves(tmp_path / "empty")
    with pytest.raises(UserError, match="--representation"):
        load_mi_curves(two_runs[0], "no_such_representation")


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_plot_command_writes_the_figure(tmp_path, two_runs, fmt, magic):
    out = tmp_path / f"fig.{fmt}"
    args = ["plot", "mi", *map(str, two_runs), "--out", str(out)]
    if fmt == "png":
        proc = run_mimax(args)  # the command as a user runs it
        assert proc.returncode == 0, proc.stderr
    else:
        assert main([*args, "--format", fmt]) == 0
    assert out.read_bytes().startswith(magic)


def test_plot_command_bad_input_exits_2(tmp_path, two_runs):
    proc = run_mimax(["plot", "mi", str(tmp_path / "nope"), "--out", str(tmp_path / "f.png")])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nope" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "f.png").exists()
    assert main(["plot", "mi", str(two_runs[0]), "--out", str(tmp_path / "f.png"), "--format", "gif"]) == 2
    assert main(["plot", "nosuchfigure"]) == 2


def test_experiment_dir_averages_its_seeds(tmp_path):
    exp = tmp_path / "exp"
    assert main(["train", *TINY_GAUSSIAN, "--epochs", "1", "--num_runs", "2", "--mi_batch_size", "128",
                 "--output_dir", str(exp)]) == 0
    both = load_mi_curves(exp)
    seeds = [load_mi_curves(exp / f"seed_{k}") for k in (0, 1)]
    for est in BOUNDS:
        per_seed = np.array([s.series[est]["gap"][0] for s in seeds])
        np.testing.assert_allclose(both.series[est]["gap"][0], per_seed.mean(0))
        np.testing.assert_allclose(both.series[est]["gap"][1], per_seed.std(0, ddof=1))
    assert seeds[0].source == "exp/seed_0"
