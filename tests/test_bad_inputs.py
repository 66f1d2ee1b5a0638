"""The bad-input matrix of docs/reliability.md, row by row: each case's exit code and exact one-line
message (``<tmp>`` stands for the test's temp dir; a message ending in ``…`` is a prefix, where the rest
comes from torch). Most cases call ``mimax.cli.main`` in-process (``main.py`` calls the same function);
``SUBPROCESS`` cases run ``main.py`` for real."""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from image_fixtures import py2_pickle, write_cifar

from conftest import ROOT, TINY_GAUSSIAN, run_main
from mimax.cli import main

DOC = ROOT / "docs" / "reliability.md"
RUN = ["train", *TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "1"]
CKPT = "seed_0/checkpoints/ckpt_epoch_0001.pt"


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _yaml(tmp: Path, text: str | bytes) -> list[str]:
    return [*RUN, "--config", str(_write(tmp / "c.yaml", text)), "--output_dir", str(tmp / "o")]


def _run(tmp: Path, *flags: str) -> list[str]:
    return [*RUN, *flags, "--output_dir", str(tmp / "o")]


def _exp(tmp: Path, finished: Path) -> Path:
    shutil.copytree(finished, tmp / "exp")
    return tmp / "exp"


def _replace_ckpt(tmp: Path, finished: Path, make) -> list[str]:
    exp = _exp(tmp, finished)
    ckpt = exp / CKPT
    make(ckpt)
    (exp / "seed_0" / "results.json").unlink()  # unfinished seed: resuming reads its checkpoint
    return ["train", "--resume", str(exp)]


def _foreign_method(ckpt: Path) -> None:
    obj = torch.load(ckpt, weights_only=True)
    obj["method"] = "SimCLR"
    torch.save(obj, ckpt)


def _other_shapes(ckpt: Path) -> None:
    obj = torch.load(ckpt, weights_only=True)
    obj["model"] = {k: torch.cat([v, v]) if v.ndim else v for k, v in obj["model"].items()}
    torch.save(obj, ckpt)


def _cifar_run(data_dir: Path | None, tmp: Path) -> list[str]:
    flags = ["--data_dir", str(data_dir)] if data_dir is not None else []
    return ["train", "--model_name", "JMI", "--dataset", "CIFAR10", *flags, "--epochs", "2", "--warmup_epochs", "0",
            "--batch_size", "4", "--resnet_width", "8", "--num_threads", "1", "--output_dir", str(tmp / "o")]


class _OpensAFile:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _cifar_malicious(t: Path) -> list[str]:
    evil = pickle.dumps({"data": _OpensAFile(str(t / "pwned")), "labels": []}, protocol=2)
    write_cifar(t / "d", override={"data_batch_3": evil})
    return _cifar_run(t / "d", t)


def _cifar_truncated(t: Path) -> list[str]:
    write_cifar(t / "d", extracted=True, override={"data_batch_2": b"\x80\x02}q"})
    return _cifar_run(t / "d", t)


def _cifar_tar(t: Path, extra: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> list[str]:
    """An archive with the six batch files plus one hostile member ``extra``."""
    (t / "d").mkdir()
    blob = py2_pickle({"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
    with tarfile.open(t / "d" / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        info = tarfile.TarInfo(extra)
        info.type, info.linkname = kind, target
        info.size = 1 if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(b"x") if kind == tarfile.REGTYPE else None)
    return _cifar_run(t / "d", t)


CASES = {
    # image data (CIFAR-10 as the example; every loader has its own tests in test_image_data.py)
    "data_dir_not_given": lambda t, f: _cifar_run(None, t),
    "data_dir_missing": lambda t, f: _cifar_run(t / "nowhere", t),
    "data_dir_empty": lambda t, f: (t / "d").mkdir() or _cifar_run(t / "d", t),
    "data_not_an_archive": lambda t, f: _cifar_run(_write(t / "d" / "cifar-10-python.tar.gz", b"garbage").parent, t),
    "data_truncated_batch": lambda t, f: _cifar_truncated(t),
    "data_malicious_pickle": lambda t, f: _cifar_malicious(t),
    "data_tar_member_dotdot": lambda t, f: _cifar_tar(t, "../escape.txt"),
    "data_tar_member_absolute": lambda t, f: _cifar_tar(t, "/tmp/absolute.txt"),
    "data_tar_symlink": lambda t, f: _cifar_tar(t, "cifar-10-batches-py/batches.meta", tarfile.SYMTYPE, "/etc/passwd"),
    "data_tar_hardlink": lambda t, f: _cifar_tar(t, "cifar-10-batches-py/batches.meta", tarfile.LNKTYPE, "/etc/passwd"),
    # flags out of range, malformed or unknown
    "epochs_zero": lambda t, f: _run(t, "--epochs", "0"),
    "batch_size_one_batchnorm": lambda t, f: _run(t, "--batch_size", "1"),
    "negative_lr": lambda t, f: _run(t, "--initial_lr", "-0.1"),
    "nan_lr": lambda t, f: _run(t, "--initial_lr", "nan"),
    "inf_temperature": lambda t, f: _run(t, "--temperature", "inf"),
    "projection_layer_4": lambda t, f: _run(t, "--projection_layer", "4"),
    "momentum_one": lambda t, f: _run(t, "--momentum", "1"),
    "not_an_int": lambda t, f: _run(t, "--epochs", "two"),
    "unknown_flag": lambda t, f: _run(t, "--epoch", "3"),
    "unknown_method": lambda t, f: _run(t, "--model_name", "SimSLR"),
    "method_module_missing": lambda t, f: _run(t, "--model_name", "my_pkg.methods:MyMethod"),
    "method_file_missing": lambda t, f: _run(t, "--model_name", f"{t}/my_methods.py:MyMethod"),
    "method_not_a_method": lambda t, f: _run(t, "--model_name", "mimax.objectives:nt_xent_loss"),
    "unknown_architecture": lambda t, f: _run(t, "--dataset", "Digits", "--architecture", "resnet_nope",
                                              "--warmup_epochs", "0"),
    "architecture_input_size": lambda t, f: _run(t, "--dataset", "Digits", "--architecture", "vit_b_16",
                                                 "--warmup_epochs", "0"),
    "unknown_wandb_mode": lambda t, f: _run(t, "--wandb_mode", "sometimes"),
    "unknown_dataset": lambda t, f: _run(t, "--dataset", "CIFAR11"),
    "unknown_optimizer": lambda t, f: _run(t, "--optimizer", "rmsprop"),
    "unknown_on_nan": lambda t, f: _run(t, "--on_nan", "ignore"),
    "bad_device": lambda t, f: _run(t, "--device", "tpu"),
    "unknown_command": lambda t, f: ["trian"],
    # conflicting flags
    "warmup_not_below_epochs": lambda t, f: _run(t, "--epochs", "2", "--warmup_epochs", "2"),
    "gaussian_with_resnet": lambda t, f: _run(t, "--architecture", "ResNet18"),
    "no_marginal_with_simclr": lambda t, f: _run(t, "--model_name", "SimCLR", "--no_marginal"),
    "num_classes_mismatch": lambda t, f: _run(t, "--num_classes", "7"),
    "too_few_samples_for_batch": lambda t, f: _run(t, "--gm_train_size", "32"),
    # config file (the data a run reads before anything else)
    "config_missing": lambda t, f: [*RUN, "--config", str(t / "none.yaml")],
    "config_corrupt_yaml": lambda t, f: _yaml(t, "epochs: [1,\n"),
    "config_not_a_mapping": lambda t, f: _yaml(t, "- epochs\n"),
    "config_unknown_key": lambda t, f: _yaml(t, "epoch: 3\n"),
    "config_wrong_type": lambda t, f: _yaml(t, "epochs: ten\n"),
    "config_not_utf8": lambda t, f: _yaml(t, b"epochs: \xff\xfe\n"),
    "config_python_tag": lambda t, f: _yaml(t, f"epochs: !!python/object/apply:os.mkdir ['{t}/pwned']\n"),
    # output directory
    "output_dir_exists": lambda t, f: [*RUN, "--output_dir", str(_exp(t, f))],
    "output_dir_is_file": lambda t, f: [*RUN, "--output_dir", str(_write(t / "file", "x"))],
    "overwrite_foreign_dir": lambda t, f: [*RUN, "--overwrite", "--output_dir",
                                          str(_write(t / "mine" / "precious.txt", "keep").parent)],
    "output_dir_unwritable": lambda t, f: [*RUN, "--output_dir", str(_write(t / "file", "x") / "sub")],
    # resume
    "resume_missing": lambda t, f: ["train", "--resume", str(t / "nothing")],
    "resume_not_an_experiment": lambda t, f: ["train", "--resume", str(t)],
    "resume_not_a_checkpoint": lambda t, f: ["train", "--resume", str(_write(t / "x.pt", b"x"))],
    "resume_changed_flag": lambda t, f: ["train", "--resume", str(_exp(t, f)), "--initial_lr", "0.5"],
    "resume_corrupt_config": lambda t, f: ["train", "--resume",
                                           str(_write(_exp(t, f) / "config.json", "{").parent)],
    "resume_empty_checkpoint": lambda t, f: _replace_ckpt(t, f, lambda c: c.write_bytes(b"")),
    "resume_truncated_checkpoint": lambda t, f: _replace_ckpt(
        t, f, lambda c: c.write_bytes(c.read_bytes()[: c.stat().st_size // 2])),
    "resume_garbage_checkpoint": lambda t, f: _replace_ckpt(t, f, lambda c: c.write_bytes(b"not a checkpoint")),
    "resume_foreign_checkpoint": lambda t, f: _replace_ckpt(t, f, lambda c: torch.save({"w": torch.ones(2)}, c)),
    "resume_other_method_checkpoint": lambda t, f: _replace_ckpt(t, f, _foreign_method),
    "resume_other_architecture_checkpoint": lambda t, f: _replace_ckpt(t, f, _other_shapes),
}


def doc_rows() -> dict[str, tuple[int, str]]:
    """``{case id: (exit code, message)}`` from the matrix table of docs/reliability.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([a-z0-9_]+)` \|.*\| (\d) \| `(.*)` \|$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), m.group(3))
    return rows


def assert_message(err: str, want: str, tmp: Path) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    got = lines[0].replace(str(tmp), "<tmp>")
    if want.endswith("…"):
        assert got.startswith(want[:-1]), got
    else:
        assert got == want


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "exp"
    assert main([*RUN, "--model_save_interval", "1", "--output_dir", str(out)]) == 0
    return out


def test_every_documented_case_has_a_test_and_back():
    assert set(doc_rows()) - set(SUBPROCESS) == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, finished, capsys):
    code, message = doc_rows()[case]
    argv = CASES[case](tmp_path, finished)
    capsys.readouterr()
    assert main(argv) == code
    assert_message(capsys.readouterr().err, message, tmp_path)
    assert not (tmp_path / "o").exists(), "a refused run must not create its output directory"
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path.parent / "escape.txt").exists()
    if case == "overwrite_foreign_dir":
        assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"
    if case == "output_dir_exists":
        assert (tmp_path / "exp" / "results.json").read_bytes() == (finished / "results.json").read_bytes()


def _disk_full(tmp: Path) -> subprocess.CompletedProcess:
    """A real full disk: a 96 KiB tmpfs (needs root / CAP_SYS_ADMIN)."""
    mnt = tmp / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        proc = run_main([*RUN[1:], "--epochs", "3", "--model_save_interval", "1", "--output_dir", str(mnt / "o")])
        leftovers = [p.name for p in (mnt / "o").rglob(".*.tmp")]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert leftovers == [], "a failed write must remove its temp file"
    return proc


def _file_size_limit(tmp: Path) -> subprocess.CompletedProcess:
    """A quota: RLIMIT_FSIZE of 32 KiB makes the first checkpoint write fail (works unprivileged)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *RUN[1:], "--output_dir", str(tmp / "q")],
                          capture_output=True, text=True, env=env, preexec_fn=limit, timeout=300, check=False)


def _diverging(tmp: Path) -> subprocess.CompletedProcess:
    return run_main([*RUN[1:], "--epochs", "2", "--initial_lr", "1e37", "--output_dir", str(tmp / "d")])


def _malicious_checkpoint(tmp: Path) -> subprocess.CompletedProcess:
    """A checkpoint whose unpickling would create a file; ``weights_only=True`` must refuse it."""
    exp = tmp / "exp"
    assert main([*RUN, "--epochs", "2", "--stop_after", "1", "--output_dir", str(exp)]) == 0
    ckpt = exp / CKPT
    torch.save({"format": "mimax-checkpoint-v1", "payload": _CreatesFile(str(tmp / "pwned"))}, ckpt)
    return run_main(["--resume", str(ckpt)])


class _CreatesFile:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


SUBPROCESS = {"disk_full": _disk_full, "file_size_limit": _file_size_limit, "diverged": _diverging,
              "malicious_checkpoint": _malicious_checkpoint}


@pytest.mark.parametrize("case", sorted(SUBPROCESS))
def test_bad_input_subprocess(case, tmp_path):
    code, message = doc_rows()[case]
    proc = SUBPROCESS[case](tmp_path)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    err = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("mimax: warning"))
    assert_message(err, message, tmp_path)
    assert not (tmp_path / "pwned").exists(), "loading the checkpoint executed code"
