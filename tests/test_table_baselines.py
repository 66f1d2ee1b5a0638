"""``mimax table`` never picks the wrong random-init baseline: baselines are keyed by the configuration that
determines them, rows say what differs, the result does not depend on argument order, and baselines that
should be identical but are not are refused."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_cli

DIGITS = ["--dataset", "Digits", "--epochs", "1", "--warmup_epochs", "0", "--batch_size", "64",
          "--num_threads", "1", "--num_workers", "0", "--train_subset", "256", "--test_subset", "128",
          "--mi_interval", "0", "--precision", "fp32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    made = {}
    for name, method, width in (("simclr_w4", "SimCLR", 4), ("byol_w8", "BYOL", 8), ("byol_w4", "BYOL", 4)):
        proc = run_cli(["train", "--model_name", method, "--resnet_width", str(width), *DIGITS,
                         "--output_dir", str(root / name)])
        assert proc.returncode == 0, proc.stderr[-2000:]
        made[name] = root / name
    return made


def _baseline(run) -> dict[str, float]:
    summary = json.loads((run / "results.json").read_text())["summary"]
    row = summary["Random init (ResNet18)"]
    return {m: row[m]["mean"] for m in ("linear", "knn")}


def _rows(text: str) -> dict[str, list[str]]:
    """``{row label: [linear cell, kNN cell]}`` of a one-dataset table."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"\| (.+?) \| (.+?) \|$", line)
        if m and m.group(1) not in ("method", "---"):
            rows.setdefault(m.group(1), []).append(m.group(2))
    return rows


def test_baselines_of_different_widths_get_their_own_rows_in_any_order(runs):
    a, b = runs["simclr_w4"], runs["byol_w8"]
    assert _baseline(a) != _baseline(b)  # the situation of the bug: same label, same seed, different numbers
    tables = []
    for order in ((a, b), (b, a)):
        proc = run_cli(["table", *map(str, order)])
        assert proc.returncode == 0, proc.stderr
        tables.append(_rows(proc.stdout))
    assert tables[0] == tables[1]
    rows = tables[0]
    for run, width in ((a, 4), (b, 8)):
        want = _baseline(run)
        assert rows[f"Random init (ResNet18, resnet_width {width})"] == [f"{100 * want['linear']:.2f}",
                                                                          f"{100 * want['knn']:.2f}"]
    proc = run_cli(["table", str(a), str(b)])
    sources = [ln for ln in proc.stdout.splitlines() if ln.startswith("- `")]
    for line, width in zip(sources, (4, 8)):
        assert f"resnet_width {width}, " in line
        assert line.endswith(f"; random init in row 'Random init (ResNet18, resnet_width {width})'")


def test_identical_baselines_of_two_methods_are_one_row(runs):
    a, c = runs["simclr_w4"], runs["byol_w4"]
    assert _baseline(a) == _baseline(c)  # same configuration and seed: the same initialization, evaluated alike
    proc = run_cli(["table", str(a), str(c)])
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert [r for r in rows if r.startswith("Random init")] == ["Random init (ResNet18)"]
    assert rows["Random init (ResNet18)"][0] == f"{100 * _baseline(a)['linear']:.2f}"  # one value, n = 1


def test_baselines_that_should_agree_but_do_not_are_refused(runs, tmp_path):
    import shutil

    c = tmp_path / "byol_w4_edited"
    shutil.copytree(runs["byol_w4"], c)
    results = json.loads((c / "results.json").read_text())
    stat = results["summary"]["Random init (ResNet18)"]["linear"]
    stat["values"] = [stat["values"][0] + 0.01]
    stat["mean"] = stat["values"][0]
    (c / "results.json").write_text(json.dumps(results))
    proc = run_cli(["table", str(runs["simclr_w4"]), str(c)])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "same random-init configuration and seed 0" in proc.stderr and "refusing to merge" in proc.stderr
