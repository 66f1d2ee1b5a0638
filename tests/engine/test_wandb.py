"""``--wandb``: Weights & Biases in offline mode (no network). The run id is stored in the seed
directory, a resumed run continues the same W&B run, the logged losses are metrics.csv's (always
written). The offline ``.wandb`` files are read back in their on-disk format: W&B's header, then
LevelDB-log records (32 KiB blocks, 7-byte record headers) holding ``wandb_internal`` protobuf records."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest

from conftest import TINY_GAUSSIAN, run_cli, run_main

pytest.importorskip("wandb")


def wandb_records(path: Path):
    """The protobuf records of an offline ``run-<id>.wandb`` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment: one record
            record = pb.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def logged(run_file: Path) -> tuple[set[str], list[dict]]:
    ids, history = set(), []
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            ids.add(record.run.run_id)
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return ids, history


def test_offline_wandb_run_is_continued_by_resume(tmp_path):
    out = tmp_path / "run"
    args = [*TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "3", "--output_dir", str(out)]
    first = run_main([*args, "--stop_after", "2", "--wandb", "--wandb_mode", "offline"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_id = json.loads((out / "seed_0" / "wandb.json").read_text())["id"]
    assert len(run_id) == 8
    second = run_main(["--resume", str(out)], cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert json.loads((out / "seed_0" / "wandb.json").read_text())["id"] == run_id
    files = sorted((out / "seed_0" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in files)
    ids_1, hist_1 = logged(files[0])
    ids_2, hist_2 = logged(files[1])
    assert ids_1 == ids_2 == {run_id}
    losses = {h["epoch"]: h["train/loss"] for h in hist_1 + hist_2 if "train/loss" in h}
    with open(out / "seed_0" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))  # the CSVs are written whatever the loggers
    assert sorted(losses) == [1, 2, 3] == [int(r["epoch"]) for r in rows]
    assert [losses[int(r["epoch"])] for r in rows] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-6)
    assert any(k.startswith("eval/SimCLR/") for h in hist_2 for k in h)


def test_wandb_flags_are_validated(tmp_path):
    proc = run_cli(["train", *TINY_GAUSSIAN, "--epochs", "1", "--wandb", "--wandb_mode", "sometimes",
                     "--output_dir", str(tmp_path / "r")])
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "mimax: error: --wandb_mode: expected online, offline or disabled (got 'sometimes')")
    assert not (tmp_path / "r").exists()


def test_wandb_without_a_login_is_one_line_and_leaves_nothing(tmp_path):
    """Online mode (the default) with no API key: W&B's UsageError was a 40-line traceback with exit 1."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / "no.netrc"), OMP_NUM_THREADS="1", WANDB_SILENT="true")
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *TINY_GAUSSIAN, "--epochs", "1", "--wandb",
                           "--output_dir", str(out)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines[-1].startswith("mimax: error: --wandb: W&B could not start a run (") and "wandb login" in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not out.exists()
