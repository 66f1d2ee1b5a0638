"""JSON records are strict JSON: NaN and infinities are written as null (Python's NaN token is refused by
JavaScript's JSON.parse and other strict parsers)."""

from __future__ import annotations

import json
import math

from mimax.store.atomic import write_json


def _strict(text: str):
    def refuse(token: str):
        raise ValueError(f"non-standard token {token}")

    return json.loads(text, parse_constant=refuse)


def test_write_json_writes_non_finite_floats_as_null(tmp_path):
    obj = {"std": math.nan, "ci": (1.5, math.inf), "rows": [{"x": -math.inf, "n": 3}], "name": "NaN", "ok": 0.25}
    write_json(tmp_path / "r.json", obj)
    assert _strict((tmp_path / "r.json").read_text()) == {"std": None, "ci": [1.5, None],
                                                          "rows": [{"x": None, "n": 3}], "name": "NaN", "ok": 0.25}


def test_a_one_seed_run_writes_strict_json(tmp_path):
    from conftest import TINY_GAUSSIAN
    from mimax.cli import main

    out = str(tmp_path / "r")
    assert main(["train", *TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "1", "--output_dir", out]) == 0
    for path in sorted((tmp_path / "r").rglob("*.json")):
        _strict(path.read_text())  # raises on NaN / Infinity
    summary = _strict((tmp_path / "r" / "results.json").read_text())["summary"]
    assert all(stat["std"] is None and stat["n"] == 1 for row in summary.values() for stat in row.values())
    # the values fitted at run time, which config.json keeps as given (knn_k 200, monitor_size 2048)
    as_run = _strict((tmp_path / "r" / "seed_0" / "results.json").read_text())["as_run"]
    assert as_run == {"knn_k": 512 // 5, "probe_train_images": 512, "probe_test_images": 256, "monitor_pairs": 256}
