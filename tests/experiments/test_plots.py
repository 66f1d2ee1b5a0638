"""Figure 2 (`mimax plot mi`): the figure's panels and lines, and the command end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import TINY_GAUSSIAN, run_cli, run_mimax
from mimax.bounds import BOUNDS
from mimax.cli import main
from mimax.errors import UserError
from mimax.plots import (
    FAMILIES,
    MICurves,
    _ceiling_fits,
    _styles,
    group_runs,
    load_accuracy_curves,
    load_mi_curves,
    plot_accuracy_vs_time,
    plot_mi,
)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for method in ("JMI", "SimCLR", "SDMI"):
        assert main(["train", *TINY_GAUSSIAN, "--model_name", method, "--epochs", "2", "--mi_interval", "1",
                     "--mi_batch_size", "128", "--output_dir", str(root / method)]) == 0
    return root / "JMI", root / "SimCLR", root / "SDMI"


def test_figure_in_the_papers_layout(two_runs):
    """SDMI family top row, JMI family bottom row, one column per estimator; lines, ticks, legends."""
    fig = plot_mi(list(two_runs))
    fig.canvas.draw()
    axes = np.array(fig.axes).reshape(2, 3)
    for row, (family, members) in enumerate((("SDMI family", ["SDMI"]), ("JMI family", ["JMI", "SimCLR"]))):
        for col, est in enumerate(BOUNDS):
            ax = axes[row, col]
            assert ax.get_title().startswith(f"{family}: {est} contrast score (embedding)"), ax.get_title()
            labelled = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
            assert [lab for lab in labelled if not lab.startswith("ceiling")] == members
            np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [0, 1, 2])
            assert all(float(t).is_integer() for t in ax.get_xticks())  # integer epoch ticks
        legend = axes[row, -1].get_legend()
        assert [t.get_text() for t in legend.get_texts()][:len(members)] == members
        # the legend sits right of every panel of its row: it covers no curve
        assert legend.get_window_extent().x0 >= max(ax.get_window_extent().x1 for ax in axes[row])
    assert axes[1, 0].get_ylabel() == axes[1, 1].get_ylabel() == "score (nats scale, not MI)"
    assert "not nats" in axes[1, 2].get_ylabel()
    for row in range(2):
        info = axes[row, 1]
        ceilings = [ln for ln in info.get_lines() if ln.get_label().startswith("ceiling")]
        curves = [ln.get_ydata() for ln in info.get_lines() if not ln.get_label().startswith("ceiling")]
        if _ceiling_fits(curves, math.log(128)):
            assert len(ceilings) == 1 and np.allclose(ceilings[0].get_ydata(), math.log(128))
        else:  # drawn, it would squash the curves: it is named in the title instead
            assert not ceilings and f"ceiling log N = {math.log(128):.2f} (above the curves)" in info.get_title()
        assert not any(ln.get_label().startswith("ceiling") for ln in axes[row, 0].get_lines())


def test_ceiling_is_drawn_only_where_it_does_not_squash_the_curves():
    assert _ceiling_fits([np.array([-8.0, 2.0])], math.log(512))  # range 10: 6.24 is close enough
    assert not _ceiling_fits([np.array([0.0, 0.5])], math.log(512))  # would shrink a 0.5-high curve to a line


def test_gap_figure(two_runs):
    fig = plot_mi(list(two_runs), quantity="gap")
    assert fig.axes[0].get_title() == "SDMI family: cos-DV contrast, paired - shuffled (not MI) (embedding)"
    with pytest.raises(ValueError, match="quantity"):
        plot_mi(list(two_runs), quantity="nats")


def test_figure_values_are_the_csv_values(two_runs):
    curves = load_mi_curves(two_runs[0])
    import csv

    with open(two_runs[0] / "seed_0" / "mi.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["representation"] == "embedding" and r["estimator"] == "JSD"]
    assert curves.method == "JMI" and curves.paradigm == "joint"
    np.testing.assert_allclose(curves.series["JSD"]["value"][0], [float(r["value"]) for r in rows])
    np.testing.assert_allclose(curves.series["JSD"]["gap"][0], [float(r["gap"]) for r in rows])


def test_every_configuration_has_its_own_colour_and_marker():
    def fake(paradigm):
        return MICurves(label="m", source="d", method="m", paradigm=paradigm, tau_est=0.1, epochs=np.arange(2))

    runs = [fake("self-distillation") for _ in range(8)] + [fake("joint") for _ in range(7)]  # the demo's 15
    styles = _styles(runs)
    assert len({(c, m) for _, c, m in styles}) == 15
    assert len({c for _, c, _ in styles}) == 15 and len({m for _, _, m in styles}) == 15
    assert {s for s, _, _ in styles[:8]} == {FAMILIES["self-distillation"][1]}
    assert {s for s, _, _ in styles[8:]} == {FAMILIES["joint"][1]}


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
    proc = run_cli(["plot", "mi", str(tmp_path / "nope"), "--out", str(tmp_path / "f.png")])
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


def _seed(path, method, evals, epoch_times, seed=0, **config):
    """A seed directory with eval.csv (epoch, encoder, linear, knn) and metrics.csv (epoch_time_s)."""
    d = path / f"seed_{seed}"
    d.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_name": method, "dataset": "FashionMNIST", "seed": seed,
                                                  **config}))
    (d / "eval.csv").write_text("epoch,encoder,linear,knn\n" + "".join(
        f"{e},{method},{lin},{knn}\n" for e, lin, knn in evals))
    (d / "metrics.csv").write_text("epoch,epoch_time_s\n" + "".join(
        f"{i + 1},{t}\n" for i, t in enumerate(epoch_times)))


def test_accuracy_curves_average_seeds_at_their_training_time(tmp_path):
    """Two seeds of one configuration (two experiment directories) are one curve: at epoch e the mean over
    seeds of the training time of epochs 1..e (minutes) and of the accuracy (%)."""
    from mimax.plots import group_runs, load_accuracy_curves, plot_accuracy_vs_time

    _seed(tmp_path / "s0", "BYOL", [(0, 0.5, 0.4), (2, 0.8, 0.7)], [60, 120], seed=0)
    _seed(tmp_path / "s1", "BYOL", [(0, 0.6, 0.5), (2, 0.9, 0.8)], [90, 90], seed=1)
    (tmp_path / "other").mkdir()
    _seed(tmp_path / "other", "SimCLR", [(0, 0.5, 0.4), (1, 0.7, 0.6)], [30])
    groups = group_runs([tmp_path / "s0", tmp_path / "other", tmp_path / "s1"])
    assert groups == [[tmp_path / "s0", tmp_path / "s1"], [tmp_path / "other"]]
    curves = load_accuracy_curves(groups[0])
    np.testing.assert_allclose(curves.minutes["BYOL"], [0.0, (180 + 180) / 2 / 60])
    np.testing.assert_allclose(curves.accuracy["BYOL"]["linear"], [55.0, 85.0])
    np.testing.assert_allclose(curves.accuracy["BYOL"]["knn"], [45.0, 75.0])
    fig = plot_accuracy_vs_time(groups)
    assert [line.get_label() for line in fig.axes[0].lines] == ["BYOL", "SimCLR"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no seed with eval.csv"):
        load_accuracy_curves([tmp_path / "empty"])


@pytest.mark.parametrize("name,given", [("fig.png", "pdf"), ("fig.SVG", "png"), ("fig.jpeg", "png")])
def test_a_format_that_contradicts_the_out_suffix_is_refused_naming_both(tmp_path, name, given):
    """`--out fig.png --format pdf` wrote a PDF named fig.png; refused before any run is read (the RUN_DIR
    here is not even one), nothing written. A matching suffix (fig.jpeg is jpg, fig.PDF is pdf) is fine."""
    out = tmp_path / name
    proc = run_cli(["plot", "mi", str(tmp_path / "nope"), "--out", str(out), "--format", given])
    assert proc.returncode == 2
    suffix = out.suffix.lower()
    assert proc.stderr == (f"mimax: error: --format {given} contradicts --out {out} (a {suffix} name); drop "
                           f"--format, or give --out a .{given} name\n")
    assert not out.exists()
    from mimax.cli import figure_format

    assert figure_format("fig.PDF", "pdf") == figure_format("fig.txt", "pdf") == figure_format("fig", "pdf") == "pdf"


REFUSED = "; pass one experiment per method and dataset (or runs of one configuration with different seeds)"


@pytest.mark.parametrize("figure", ["mi", "accuracy"])
def test_a_seed_given_twice_is_refused_as_mimax_table_refuses_it(tmp_path, figure):
    """`plot exp exp/seed_0` counted seed 0 twice (a shrunken band, shifted means); now the one line of
    `mimax table`, and nothing is written."""
    exp = tmp_path / "exp"
    for seed in (0, 1):
        _seed(exp, "BYOL", [(0, 0.5, 0.4), (1, 0.6 + seed / 10, 0.5)], [60], seed=seed)
    out = tmp_path / "f.png"
    for twice in ([exp, exp / "seed_0"], [exp, exp]):
        proc = run_cli(["plot", figure, *map(str, twice), "--out", str(out)])
        assert proc.returncode == 2
        seeds = "0" if twice[1] != exp else "0, 1"
        assert proc.stderr == (f"mimax: error: {twice[1]} and {exp} both give 'BYOL' on FashionMNIST "
                               f"(seed {seeds} in both){REFUSED}\n")
        assert not out.exists()
    with pytest.raises(UserError, match=r"\(seed 0 in both\)"):  # the loaders, called directly, refuse too
        (load_mi_curves if figure == "mi" else load_accuracy_curves)([exp, exp / "seed_0"])


def test_runs_in_another_precision_are_another_curve_never_one(tmp_path):
    """fp32 seed 0 and bf16 seed 1 were averaged into one curve, which `mimax table` refuses as one cell; the
    thread count (a runtime flag that changes no number) still does not split a configuration."""
    for name, seed, config in (("fp32", 0, {"precision": "fp32", "num_threads": 1}),
                               ("bf16", 1, {"precision": "bf16", "num_threads": 1}),
                               ("threads", 2, {"precision": "fp32", "num_threads": 4})):
        _seed(tmp_path / name, "BYOL", [(0, 0.5, 0.4), (1, 0.7, 0.6)], [60], seed=seed, **config)
    runs = [tmp_path / n for n in ("fp32", "bf16", "threads")]
    assert group_runs(runs) == [[runs[0], runs[2]], [runs[1]]]
    fig = plot_accuracy_vs_time(group_runs(runs))
    assert [line.get_label() for line in fig.axes[0].lines] == ["BYOL (fp32)", "BYOL (bf16)"]
    with pytest.raises(UserError) as err:
        load_accuracy_curves(runs[:2])
    assert str(err.value) == (f"{runs[1]} and {runs[0]} both give 'BYOL' on FashionMNIST (configurations differ "
                              f"in: precision fp32 vs bf16){REFUSED}")


@pytest.mark.parametrize("dim", [2, 3])
def test_trajectory_panel_draws_each_cluster_path_as_its_segments_fading_in(dim):
    """Figure 3's panel: per cluster, the segments between consecutive records of the (T, K, D) centers, in
    order, in the cluster's colour with opacity rising from 0.1 to 1, and the last center marked."""
    import matplotlib.pyplot as plt

    from mimax.plots import _draw_panel

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 3, dim))
    centers /= np.linalg.norm(centers, axis=2, keepdims=True)
    fig = plt.figure()
    ax = fig.add_subplot(111, **({"projection": "3d"} if dim == 3 else {}))
    _draw_panel(ax, centers, "panel")
    from matplotlib.collections import LineCollection

    def segments_of(coll):  # a 3D collection keeps its data coordinates apart from its 2D projection
        return list(coll._segments3d if dim == 3 else coll.get_segments())

    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    paths = [c for c in lines if len(segments_of(c)) == 5]
    assert len(paths) == 3 and len(lines) == 3 + (dim == 3)  # one per cluster (+ the sphere's wireframe)
    tab10 = plt.get_cmap("tab10")(np.arange(3))
    for k, coll in enumerate(paths):
        segments = np.asarray(segments_of(coll))
        for i in range(5):  # segment i joins record i to record i + 1 (a loop over the records as reference)
            np.testing.assert_allclose(segments[i], [centers[i, k], centers[i + 1, k]])
        rgba = coll.get_color()
        np.testing.assert_allclose(rgba[:, :3], np.repeat(tab10[k][None, :3], 5, 0))
        np.testing.assert_allclose(rgba[:, 3], np.linspace(0.1, 1.0, 5))
    assert ax.get_title() == "panel"
    plt.close(fig)


def test_trajectories_of_a_train_run_are_refused_naming_who_records_them(two_runs, tmp_path, capsys):
    """`mimax train` records no trajectories: the message says which command does (not "run the Gaussian
    experiment", which a Gaussian `mimax train` run is)."""
    seed_dir = two_runs[0] / "seed_0"
    assert main(["plot", "trajectories", str(seed_dir), "--out", str(tmp_path / "t.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mimax: error: {seed_dir / 'trajectories.json'}: no trajectories recorded; `mimax demo` records "
                   "the cluster-center trajectories (Figure 3) of its runs, `mimax train` does not")
    assert not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("name,magic", [("f.jpg", b"\xff\xd8\xff"), ("f.tif", b"II*\x00"), ("f.svg", b"<?xml"),
                                        ("f.pdf", b"%PDF"), ("f", b"\x89PNG"), ("f.PNG", b"\x89PNG")])
def test_a_figure_is_written_in_the_format_its_name_says(two_runs, tmp_path, name, magic):
    """--out's suffix chooses the format (a .jpg held PNG bytes before); no suffix: png."""
    assert main(["plot", "mi", str(two_runs[0]), "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_a_suffix_that_is_no_figure_format_is_refused_before_drawing(two_runs, tmp_path, capsys):
    for command in ("mi", "accuracy", "trajectories"):
        assert main(["plot", command, str(two_runs[0]), "--out", str(tmp_path / "f.txt")]) == 2
        assert capsys.readouterr().err.strip() == (
            f"mimax: error: --out: {tmp_path / 'f.txt'}: .txt is not a figure format; expected one of .png, .pdf, "
            ".svg, .jpg, .jpeg, .tif, .tiff, .eps, .ps (or no suffix: png), or pass --format")
    assert main(["plot", "mi", str(two_runs[0]), "--out", str(tmp_path / "f.txt"), "--format", "svg"]) == 0
    assert (tmp_path / "f.txt").read_bytes().startswith(b"<?xml")
