"""``mimax export`` killed between its two writes (the backbone and its ``.json`` sidecar), with the fault
hook (``MIMAX_KILL_AT=write:<file>:1``) in a real subprocess: mimax (``embed --backbone``, ``analyze``) never
uses a backbone under a description that is not its own; it loads a whole export or refuses in one line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import TINY_GAUSSIAN, run_cli, run_mimax
from mimax.errors import UserError
from mimax.evaluation.export import load_exported

KILL_POINTS = ("write:x.pt:1", "write:x.pt.json:1")  # inside the backbone's write; inside the sidecar's


@pytest.fixture(scope="module")
def sdmi(tmp_path_factory) -> tuple[Path, dict[str, dict[str, torch.Tensor]]]:
    """A one-epoch SDMI run (two encoders) and the backbone tensors of each encoder, by sidecar name."""
    root = tmp_path_factory.mktemp("export_killed")
    run = root / "run"
    assert run_cli(["train", *TINY_GAUSSIAN, "--model_name", "SDMI", "--epochs", "1", "--mi_interval", "0",
                    "--output_dir", str(run)]).returncode == 0
    tensors = {}
    for encoder in ("f_theta", "g_xi"):
        out = root / f"{encoder}.pt"
        assert run_cli(["export", str(run), "--out", str(out), "--encoder", encoder]).returncode == 0
        tensors[json.loads(Path(f"{out}.json").read_text())["encoder"]] = torch.load(out, weights_only=True)
    assert set(tensors) == {"f_θ", "g_ξ"}
    return run, tensors


def one_line(proc, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mimax: error: "), proc.stderr
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_an_export_killed_over_another_encoders_export_is_never_misread(sdmi, tmp_path, kill_at):
    """`export --encoder g_xi`, then `export --encoder f_theta --overwrite` killed: the sidecar used to be
    written second, so a kill inside it left f_θ's backbone beside g_ξ's sidecar, and embed/analyze used it
    as g_ξ. Now x.pt either loads as exactly the encoder its sidecar names, or is refused in one line."""
    run, tensors = sdmi
    x = tmp_path / "x.pt"
    assert run_cli(["export", str(run), "--out", str(x), "--encoder", "g_xi"]).returncode == 0
    killed = run_mimax(["export", str(run), "--out", str(x), "--encoder", "f_theta", "--overwrite"], kill_at=kill_at)
    assert killed.returncode == -9, killed.stderr
    try:
        net, meta = load_exported(x, "--backbone")
    except UserError as err:  # the new sidecar beside the old backbone
        assert str(err) == (f"--backbone: {x} is not the file its sidecar {x}.json describes (SHA-256 differs): "
                            "the export was interrupted or the file changed; export it again with --overwrite")
        one_line(run_cli(["analyze", str(x), "--output_dir", str(tmp_path / "rep")]), "SHA-256 differs", str(x))
        assert not (tmp_path / "rep").exists()
    else:  # the old export, whole
        expected = tensors[meta["encoder"]]
        assert meta["encoder"] == "g_ξ" and all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())
    assert run_cli(["export", str(run), "--out", str(x), "--encoder", "f_theta", "--overwrite"]).returncode == 0
    net, meta = load_exported(x, "--backbone")
    assert meta["encoder"] == "f_θ" and all(torch.equal(v, tensors["f_θ"][k]) for k, v in net.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt", "x.pt.json"]  # the torn write's temp file: gone


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_a_fresh_export_killed_leaves_nothing_or_says_it_was_interrupted(sdmi, tmp_path, kill_at):
    """A fresh export killed inside the sidecar's write used to leave x.pt alone: the rerun was refused
    (x.pt already exists) and embed said x.pt.json not found. The sidecar is now written first: killed inside
    it, nothing is left and the rerun succeeds; killed inside the backbone's write, the sidecar alone says the
    export was interrupted, and the rerun with --overwrite replaces it."""
    run, tensors = sdmi
    x = tmp_path / "x.pt"
    assert run_mimax(["export", str(run), "--out", str(x)], kill_at=kill_at).returncode == -9
    assert not x.exists()
    if Path(f"{x}.json").exists():
        one_line(run_cli(["analyze", str(x), "--output_dir", str(tmp_path / "rep")]),
                 f"MODEL: {x} not found beside its sidecar {x}.json: the export was interrupted")
        one_line(run_cli(["export", str(run), "--out", str(x)]),
                 f"{x}.json already exists without x.pt (an interrupted export); pass --overwrite")
        assert run_cli(["export", str(run), "--out", str(x), "--overwrite"]).returncode == 0
    else:
        assert run_cli(["export", str(run), "--out", str(x)]).returncode == 0
    net, meta = load_exported(x, "--backbone")
    assert meta["encoder"] == "f_θ" and all(torch.equal(v, tensors["f_θ"][k]) for k, v in net.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt", "x.pt.json"]  # the torn write's temp file: gone


def test_a_sidecar_without_a_hash_still_loads(sdmi, tmp_path):
    """Sidecars written before the backbone's SHA-256 was recorded load as before (nothing to check)."""
    run, tensors = sdmi
    x = tmp_path / "x.pt"
    assert run_cli(["export", str(run), "--out", str(x), "--encoder", "g_xi"]).returncode == 0
    meta = json.loads(Path(f"{x}.json").read_text())
    assert set(meta) >= {"sha256", "size"} and meta["size"] == x.stat().st_size
    Path(f"{x}.json").write_text(json.dumps({k: v for k, v in meta.items() if k not in ("sha256", "size")}))
    net, _ = load_exported(x, "--backbone")
    assert all(torch.equal(v, tensors["g_ξ"][k]) for k, v in net.state_dict().items())


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str):
    """A real small file system at ``mnt`` (root only: skipped elsewhere), unmounted after the block."""
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def fill(mnt: Path, leave_pages: int) -> Path:
    """Fill the file system at ``mnt`` with one file, then free ``leave_pages`` pages of 4 KiB; returns the file."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # full
        pass
    os.close(fd)
    os.truncate(filler, filler.stat().st_size // 4096 * 4096 - 4096 * leave_pages)
    return filler


def test_an_overwrite_on_a_full_disk_keeps_the_old_export_whole(sdmi, tmp_path):
    """On a real full disk (a tmpfs with room for a sidecar but not a backbone), `export --overwrite` replaced
    the sidecar, failed on the backbone, then deleted the sidecar: the old backbone was left without one.
    The backbone is now staged before anything is replaced."""
    run, tensors = sdmi
    with tmpfs(tmp_path / "small", "4m") as mnt:
        x = mnt / "x.pt"
        assert run_cli(["export", str(run), "--out", str(x), "--encoder", "g_xi"]).returncode == 0
        before = {p.name: p.read_bytes() for p in mnt.iterdir()}
        assert x.stat().st_size > 16384  # does not fit in the room left below
        filler = fill(mnt, leave_pages=2)  # a sidecar fits, a backbone does not
        one_line(run_cli(["export", str(run), "--out", str(x), "--encoder", "f_theta", "--overwrite"]),
                 f"cannot write {x}", "No space left on device")
        filler.unlink()
        assert {p.name: p.read_bytes() for p in mnt.iterdir()} == before  # the old pair, byte for byte; no temp
        net, meta = load_exported(x, "--backbone")
        assert meta["encoder"] == "g_ξ" and all(torch.equal(v, tensors["g_ξ"][k]) for k, v in net.state_dict().items())


def test_outputs_failing_on_a_full_disk_leave_no_folder_or_partial_report(sdmi, tmp_path):
    """export and analyze made their output folders, then failed to write on a full disk and left them (and
    analyze its analysis.md, so the rerun was refused as an unfinished report)."""
    run, _ = sdmi
    with tmpfs(tmp_path / "full", "256k") as mnt:
        fill(mnt, leave_pages=1)  # a folder fits, a backbone or a report does not
        one_line(run_cli(["export", str(run), "--out", str(mnt / "new" / "deeper" / "x.pt")]),
                 "No space left on device")
        one_line(run_cli(["analyze", str(run), "--output_dir", str(mnt / "rep"), "--num_threads", "1"]),
                 "No space left on device")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]
