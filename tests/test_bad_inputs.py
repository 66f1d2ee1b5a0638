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
from image_fixtures import idx_bytes, py2_pickle, write_cifar, write_class_tree, write_idx_set

from conftest import ROOT, TINY_GAUSSIAN, run_main
from mimax.cli import main
from mimax.store.checkpoint import seal
from mimax.store.rundir import RunLock

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
    torch.save(seal(obj), ckpt)


def _other_shapes(ckpt: Path) -> None:
    obj = torch.load(ckpt, weights_only=True)
    obj["model"] = {k: torch.cat([v, v]) if v.ndim else v for k, v in obj["model"].items()}
    torch.save(seal(obj), ckpt)


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


def _resealed(change):
    """Edit a checkpoint's content and give it a valid checksum again (a well-formed but wrong checkpoint)."""
    def make(ckpt: Path) -> None:
        obj = torch.load(ckpt, weights_only=True)
        change(obj)
        torch.save(seal(obj), ckpt)
    return make


def _flip_a_weight_bit(ckpt: Path) -> None:
    obj = torch.load(ckpt, weights_only=True)
    weight = next(v for v in obj["model"].values() if v.is_floating_point() and v.numel() >= 4)
    raw = bytearray(ckpt.read_bytes())
    at = bytes(raw).find(weight.reshape(-1)[:4].numpy().tobytes())
    raw[at + 2] ^= 0x10
    ckpt.write_bytes(bytes(raw))


def _unsealed(ckpt: Path) -> None:
    obj = torch.load(ckpt, weights_only=True)
    del obj["checksum"]
    torch.save(obj, ckpt)


def _damaged_file(tmp: Path, finished: Path, name: str, content: str) -> list[str]:
    exp = _exp(tmp, finished)
    (exp / "seed_0" / "results.json").unlink()  # unfinished: resuming reads its checkpoint and its files
    (exp / "seed_0" / name).write_text(content)
    return ["train", "--resume", str(exp)]


def _nested_run(tmp: Path, finished: Path, inner: str) -> list[str]:
    exp = _exp(tmp, finished)
    shutil.copytree(finished, exp / inner)
    return [*RUN, "--overwrite", "--output_dir", str(exp)]


def _hf_model_dir(tmp: Path) -> list[str]:
    _write(tmp / "mine" / "config.json", '{"architectures": ["BertModel"]}')
    _write(tmp / "mine" / "weights" / "model.bin", b"weights")
    return [*RUN, "--overwrite", "--output_dir", str(tmp / "mine")]


def _parent_of_run(tmp: Path, finished: Path) -> list[str]:
    _write(tmp / "mine" / "config.json", "{}")
    shutil.copytree(finished, tmp / "mine" / "run")
    return [*RUN, "--overwrite", "--output_dir", str(tmp / "mine")]


def _symlinked(tmp: Path, finished: Path) -> list[str]:
    (tmp / "link").symlink_to(_exp(tmp, finished))
    return [*RUN, "--overwrite", "--output_dir", str(tmp / "link")]


HELD: list[RunLock] = []  # locks a case holds while mimax runs (released by the test)


def _locked(tmp: Path, finished: Path) -> list[str]:
    exp = _exp(tmp, finished)
    HELD.append(RunLock(exp).acquire("test"))
    return ["train", "--resume", str(exp)]


def _run_in_folder(data: Path, tmp: Path, dataset: str = "ImageFolder") -> list[str]:
    return ["train", "--model_name", "JMI", "--dataset", dataset, "--data_dir", str(data), "--epochs", "1",
            "--warmup_epochs", "0", "--batch_size", "4", "--resnet_width", "8", "--image_size", "8",
            "--num_threads", "1", "--num_workers", "0", "--output_dir", str(tmp / "o")]


def _class_tree_with(tmp: Path, add) -> list[str]:
    write_class_tree(tmp / "d", ["a", "b"], per_class=4)
    add(tmp / "d" / "b")
    return _run_in_folder(tmp / "d", tmp)


def _size_from_the_data(argv: list[str]) -> list[str]:
    """The same run without --image_size: the size is inferred from the images' headers first."""
    i = argv.index("--image_size")
    return argv[:i] + argv[i + 2:]


def _truncated_png(folder: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "zz.png")
    (folder / "zz.png").write_bytes((folder / "zz.png").read_bytes()[:20])


def _bomb_png(folder: Path) -> None:
    """A valid PNG whose header declares 50000 x 50000 pixels (IHDR patched, CRC recomputed)."""
    import struct
    import zlib

    from PIL import Image

    Image.new("RGB", (2, 2)).save(folder / "bomb.png")
    raw = bytearray((folder / "bomb.png").read_bytes())
    raw[16:24] = struct.pack(">II", 50000, 50000)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    (folder / "bomb.png").write_bytes(bytes(raw))


def _idx_run(tmp: Path, name: str, blob: bytes) -> list[str]:
    write_idx_set(tmp / "d", n_train=40, n_test=20)
    (tmp / "d" / name).write_bytes(blob)
    return _run_in_folder(tmp / "d", tmp, "FashionMNIST")


def _corrupt_gzip() -> bytes:
    import gzip

    blob = bytearray(gzip.compress(idx_bytes(np.zeros((40, 28, 28), np.uint8)) * 3))
    blob[20:40] = b"\xff" * 20
    return bytes(blob)


def _cmd_on_damaged(tmp: Path, finished: Path, name: str, content: str, argv) -> list[str]:
    exp = _exp(tmp, finished)
    (exp / name).write_text(content)
    return argv(exp)


def _trajectories(tmp: Path, content: str) -> list[str]:
    _write(tmp / "run" / "seed_0" / "trajectories.json", content)
    return ["plot", "trajectories", str(tmp / "run" / "seed_0"), "--out", str(tmp / "t.png")]


CASES = {
    # image data (CIFAR-10 as the example; every loader has its own tests in test_image_data.py)
    "data_dir_not_given": lambda t, f: _cifar_run(None, t),
    "data_dir_missing": lambda t, f: _cifar_run(t / "nowhere", t),
    "data_dir_empty": lambda t, f: (t / "d").mkdir() or _cifar_run(t / "d", t),
    "data_dir_is_a_file": lambda t, f: _run_in_folder(_write(t / "afile", "x"), t, "Folder"),
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
    "unknown_architecture": lambda t, f: ["train", "--dataset", "Digits", "--architecture", "resnet_nope",
                                          "--epochs", "1", "--warmup_epochs", "0", "--output_dir", str(t / "o")],
    "architecture_input_size": lambda t, f: ["train", "--dataset", "Digits", "--architecture", "vit_b_16",
                                             "--epochs", "1", "--warmup_epochs", "0", "--output_dir", str(t / "o")],
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
    "gaussian_with_image_flag": lambda t, f: _run(t, "--train_subset", "100"),
    "image_dataset_with_gm_flag": lambda t, f: ["train", "--dataset", "Digits", "--gm_dim", "4", "--output_dir",
                                                str(t / "o")],
    "download_not_downloadable": lambda t, f: ["train", "--dataset", "Digits", "--download", "--output_dir",
                                               str(t / "o")],
    "class_list_outside_imagenet100": lambda t, f: ["train", "--dataset", "Digits", "--class_list", "c.txt",
                                                    "--output_dir", str(t / "o")],
    "momentum_with_adam": lambda t, f: _run(t, "--optimizer", "adam", "--momentum", "0.5"),
    "lars_eta_with_sgd": lambda t, f: _run(t, "--optimizer", "sgd", "--lars_eta", "0.1"),
    "channels_last_on_mlp": lambda t, f: _run(t, "--channels_last"),
    "mlp_hidden_dim_with_resnet": lambda t, f: ["train", "--dataset", "Digits", "--mlp_hidden_dim", "32",
                                                "--output_dir", str(t / "o")],
    "view_recipe_without_augmentation": lambda t, f: ["train", "--dataset", "Digits", "--view_recipe", "byol",
                                                      "--output_dir", str(t / "o")],
    "digits_with_data_dir": lambda t, f: ["train", "--dataset", "Digits", "--data_dir", str(t), "--output_dir",
                                          str(t / "o")],
    "resume_with_unread_data_flag": lambda t, f: ["train", "--resume", str(_exp(t, f)), "--download"],
    "num_classes_mismatch": lambda t, f: _run(t, "--num_classes", "7"),
    "too_few_samples_for_batch": lambda t, f: _run(t, "--gm_train_size", "32"),
    # config file (the data a run reads before anything else)
    "config_missing": lambda t, f: [*RUN, "--config", str(t / "none.yaml")],
    "config_is_a_directory": lambda t, f: [*RUN, "--config", str(t)],
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
    "resume_changed_warmup": lambda t, f: ["train", "--resume", str(_exp(t, f)), "--warmup_epochs", "1"],
    "resume_other_output_dir": lambda t, f: ["train", "--resume", str(_exp(t, f)), "--output_dir", str(t / "new")],
    "resume_corrupt_config": lambda t, f: ["train", "--resume",
                                           str(_write(_exp(t, f) / "config.json", "{").parent)],
    "resume_empty_checkpoint": lambda t, f: _replace_ckpt(t, f, lambda c: c.write_bytes(b"")),
    "resume_truncated_checkpoint": lambda t, f: _replace_ckpt(
        t, f, lambda c: c.write_bytes(c.read_bytes()[: c.stat().st_size // 2])),
    "resume_garbage_checkpoint": lambda t, f: _replace_ckpt(t, f, lambda c: c.write_bytes(b"not a checkpoint")),
    "resume_foreign_checkpoint": lambda t, f: _replace_ckpt(t, f, lambda c: torch.save({"w": torch.ones(2)}, c)),
    "resume_other_method_checkpoint": lambda t, f: _replace_ckpt(t, f, _foreign_method),
    "resume_other_architecture_checkpoint": lambda t, f: _replace_ckpt(t, f, _other_shapes),
    # one run per directory: marker, lock, identity (docs/reliability.md, "The run directory")
    "overwrite_hf_model_dir": lambda t, f: _hf_model_dir(t),
    "overwrite_parent_of_a_run": lambda t, f: _parent_of_run(t, f),
    "overwrite_run_with_user_file": lambda t, f: (_write(_exp(t, f) / "notes.txt", "mine") and
                                                  [*RUN, "--overwrite", "--output_dir", str(t / "exp")]),
    "overwrite_run_with_user_file_in_seed_dir": lambda t, f: (
        _write(_exp(t, f) / "seed_0" / "notes.txt", "mine") and [*RUN, "--overwrite", "--output_dir", str(t / "exp")]),
    "overwrite_run_holding_a_run": lambda t, f: _nested_run(t, f, "seed_0/inner"),
    "overwrite_current_dir": lambda t, f: [*RUN, "--overwrite", "--output_dir", "."],
    "output_dir_symlink": lambda t, f: _symlinked(t, f),
    "resume_while_running": lambda t, f: _locked(t, f),
    "resume_checkpoint_of_another_run": lambda t, f: _replace_ckpt(
        t, f, _resealed(lambda c: c.update(run_id="0123456789abcdef", seed=7))),
    "resume_checkpoint_without_rng": lambda t, f: _replace_ckpt(t, f, _resealed(lambda c: c.pop("rng"))),
    "resume_checkpoint_without_epoch": lambda t, f: _replace_ckpt(t, f, _resealed(lambda c: c.pop("epoch"))),
    "resume_checkpoint_bit_flip": lambda t, f: _replace_ckpt(t, f, _flip_a_weight_bit),
    "resume_checkpoint_without_checksum": lambda t, f: _replace_ckpt(t, f, _unsealed),
    "resume_empty_metrics": lambda t, f: _damaged_file(t, f, "metrics.csv", ""),
    "resume_garbage_metrics": lambda t, f: _damaged_file(t, f, "metrics.csv", "\x00\x01garbage\nnot,a,csv\n"),
    "resume_garbage_eval": lambda t, f: _damaged_file(t, f, "eval.csv", "epoch,encoder\nzero,JMI\n"),
    "resume_truncated_env": lambda t, f: _damaged_file(t, f, "env.json", '{"mimax": "0.1'),
    # values this machine cannot run
    "seed_negative": lambda t, f: _run(t, "--seed", "-1"),
    "seed_too_large": lambda t, f: _run(t, "--seed", "4294967296"),
    "device_mps_missing": lambda t, f: _run(t, "--device", "mps"),
    "device_cuda_abc": lambda t, f: _run(t, "--device", "cuda:abc"),
    "test_subset_one": lambda t, f: ["train", "--dataset", "Digits", "--test_subset", "1", "--output_dir",
                                     str(t / "o")],
    "gm_train_size_huge": lambda t, f: _run(t, "--gm_train_size", "100000000000"),
    "mlp_hidden_dim_huge": lambda t, f: _run(t, "--mlp_hidden_dim", "10000000"),
    "num_threads_huge": lambda t, f: [*RUN[:-2], "--num_threads", "100000", "--output_dir", str(t / "o")],
    "sgd_lr_overflow": lambda t, f: _run(t, "--optimizer", "sgd", "--initial_lr", "1e300"),
    "path_component_too_long": lambda t, f: [*RUN, "--output_dir", str(t / ("x" * 300) / "o")],
    "output_path_too_long": lambda t, f: [*RUN, "--output_dir", str(t.joinpath(*["d" * 200] * 20))],
    "config_key_not_a_string": lambda t, f: _yaml(t, "1: 2\n"),
    "config_duplicate_key": lambda t, f: _yaml(t, "epochs: 1\nepochs: 2\n"),
    # hostile data files
    "idx_corrupt_gzip": lambda t, f: _idx_run(t, "train-images-idx3-ubyte.gz", _corrupt_gzip()),
    "idx_zero_sizes": lambda t, f: _idx_run(t, "train-images-idx3-ubyte.gz", __import__("gzip").compress(
        bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + bytes(8))),
    "png_decompression_bomb": lambda t, f: _class_tree_with(t, _bomb_png),
    "folder_dangling_symlink": lambda t, f: _class_tree_with(t, lambda d: (d / "gone.jpg").symlink_to(d / "nowhere")),
    "folder_symlink_loop": lambda t, f: _class_tree_with(t, lambda d: (d / "loop.jpg").symlink_to(d / "loop.jpg")),
    "folder_fifo_jpg": lambda t, f: _class_tree_with(t, lambda d: os.mkfifo(d / "pipe.jpg")),
    # the same folders with the image size inferred from them (no --image_size)
    "folder_no_classes_size_inferred": lambda t, f: (t / "d").mkdir()
    or _size_from_the_data(_run_in_folder(t / "d", t)),
    "folder_bomb_size_inferred": lambda t, f: _size_from_the_data(_class_tree_with(t, _bomb_png)),
    "folder_truncated_size_inferred": lambda t, f: _size_from_the_data(_class_tree_with(t, _truncated_png)),
    # damaged run files read by eval, table, plot and export; outputs they must not replace
    "table_truncated_results": lambda t, f: _cmd_on_damaged(t, f, "results.json", '{"summary": {', lambda e: [
        "table", str(e)]),
    "table_ill_typed_config": lambda t, f: _cmd_on_damaged(t, f, "config.json", "[1, 2]", lambda e: ["table", str(e)]),
    "eval_ill_typed_config": lambda t, f: _cmd_on_damaged(t, f, "config.json", '{"epochs": "ten"}', lambda e: [
        "eval", str(e)]),
    "export_truncated_config": lambda t, f: _cmd_on_damaged(t, f, "config.json", '{"model_name": "JM', lambda e: [
        "export", str(e), "--out", str(t / "b.pt")]),
    "plot_truncated_mi_csv": lambda t, f: _cmd_on_damaged(t, f, "seed_0/mi.csv", "epoch,repr", lambda e: [
        "plot", "mi", str(e), "--out", str(t / "f.png")]),
    "plot_truncated_trajectories": lambda t, f: _trajectories(t, '{"method": "SDMI", "records": [{"ep'),
    "plot_ill_typed_trajectories": lambda t, f: _trajectories(
        t, '{"method": "SDMI", "records": [{"epoch": 0, "center_embedding": "x"}]}'),
    "plot_out_exists": lambda t, f: ["plot", "mi", str(f), "--out", str(_write(t / "mine.png", "mine"))],
    "plot_out_inside_a_run": lambda t, f: ["plot", "mi", str(f), "--out", str(_exp(t, f) / CKPT), "--format", "png",
                                           "--overwrite"],
    "table_out_inside_a_run": lambda t, f: ["table", str(_exp(t, f)), "--out",
                                            str(t / "exp" / "seed_0" / "metrics.csv"), "--overwrite"],
    "plot_out_not_a_regular_file": lambda t, f: (os.mkfifo(t / "fifo.png") or
                                                 ["plot", "mi", str(f), "--out", str(t / "fifo.png"), "--overwrite"]),
}
CHDIR = {"overwrite_current_dir": "exp"}  # cases run from inside a (copied) finished run


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` with its bytes (files), target (symlinks) or kind."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_file():
            out[key] = p.read_bytes()
        else:
            out[key] = "dir" if p.is_dir() else "special"
    return out


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
def test_bad_input(case, tmp_path, finished, capsys, monkeypatch):
    code, message = doc_rows()[case]
    if case in CHDIR:
        monkeypatch.chdir(_exp(tmp_path, finished))
    argv = CASES[case](tmp_path, finished)
    before = _tree(tmp_path)
    capsys.readouterr()
    try:
        assert main(argv) == code
    finally:
        while HELD:
            HELD.pop().release()
    assert_message(capsys.readouterr().err, message, tmp_path)
    if case.startswith(("overwrite_", "output_dir_symlink", "resume_while", "plot_out", "table_out")):
        assert _tree(tmp_path) == before, "a refused command changed files it does not own"
    assert not (tmp_path / "o").exists(), "a refused run must not create its output directory"
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path.parent / "escape.txt").exists()
    if case == "overwrite_foreign_dir":
        assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"
    if case == "output_dir_exists":
        assert (tmp_path / "exp" / "results.json").read_bytes() == (finished / "results.json").read_bytes()


def _disk_full(tmp: Path, options: str = "size=96k") -> subprocess.CompletedProcess:
    """A real full disk: a 96 KiB tmpfs (needs root / CAP_SYS_ADMIN); ``nr_inodes=N`` runs out of inodes."""
    mnt = tmp / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True,
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


def _limited(tmp: Path, args: list[str], limit=None, env: dict | None = None,
             wrap: list[str] = ()) -> subprocess.CompletedProcess:
    """``python -m mimax ARGS`` with a resource limit set in the child (``limit(resource)``)."""
    import resource

    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([*wrap, sys.executable, "-m", "mimax", *args], capture_output=True, text=True,
                          env=full_env, preexec_fn=(lambda: limit(resource)) if limit else None, timeout=300,
                          check=False, cwd=ROOT)


def _process_limit(tmp: Path) -> subprocess.CompletedProcess:
    def limit(resource) -> None:
        resource.setrlimit(resource.RLIMIT_NPROC, (50, resource.getrlimit(resource.RLIMIT_NPROC)[1]))

    return _limited(tmp, [*RUN, "--num_workers", "1000", "--output_dir", str(tmp / "o")], limit)


def _latin1_terminal(tmp: Path) -> subprocess.CompletedProcess:
    """stderr can only encode latin-1 and the message holds a Greek letter: escaped, not a crash."""
    _write(tmp / "θ", "a file")
    return _limited(tmp, [*RUN, "--output_dir", str(tmp / "θ" / "sub")], env={"PYTHONIOENCODING": "latin-1"})


def _unreadable_class_folder(tmp: Path) -> subprocess.CompletedProcess:
    """A chmod-000 class folder. Root reads it anyway, so the child runs without the capabilities that
    bypass file permissions (``setpriv``)."""
    write_class_tree(tmp / "d", ["a", "b"], per_class=4)
    (tmp / "d" / "b").chmod(0)
    wrap = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: cannot make a folder unreadable")
        wrap = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    try:
        return _limited(tmp, _run_in_folder(tmp / "d", tmp), wrap=wrap)
    finally:
        (tmp / "d" / "b").chmod(0o755)


def _table_out_too_large(tmp: Path, finished: Path | None = None) -> subprocess.CompletedProcess:
    """``mimax table --out`` under a 1-byte file-size limit: the message names the file, not --resume."""
    exp = tmp / "exp"
    assert main([*RUN, "--output_dir", str(exp)]) == 0

    def limit(resource) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))

    return _limited(tmp, ["table", str(exp), "--out", str(tmp / "t.md")], limit)


def _export_out_too_large(tmp: Path) -> subprocess.CompletedProcess:
    """``mimax export --out`` under a 4 KiB file-size limit, which its sidecar (written first) fits and the
    backbone does not: one line naming the file (torch's zip writer raised a RuntimeError without the reason:
    a traceback), and the sidecar of the file that was not written is removed."""
    exp = tmp / "exp"
    assert main([*RUN, "--output_dir", str(exp)]) == 0

    def limit(resource) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = _limited(tmp, ["export", str(exp), "--out", str(tmp / "b.pt")], limit)
    assert sorted(p.name for p in tmp.iterdir()) == ["exp"], "a failed export leaves no file behind"
    return proc


SUBPROCESS = {"disk_full": _disk_full, "file_size_limit": _file_size_limit, "diverged": _diverging,
              "malicious_checkpoint": _malicious_checkpoint,
              "out_of_inodes": lambda t: _disk_full(t, "nr_inodes=8"),
              "num_workers_over_process_limit": _process_limit, "latin1_terminal": _latin1_terminal,
              "folder_unreadable_class": _unreadable_class_folder, "table_out_file_too_large": _table_out_too_large,
              "export_out_file_too_large": _export_out_too_large}


@pytest.mark.parametrize("case", sorted(SUBPROCESS))
def test_bad_input_subprocess(case, tmp_path):
    code, message = doc_rows()[case]
    proc = SUBPROCESS[case](tmp_path)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert not (tmp_path / "o").exists(), "a refused run must not leave its output directory"
    assert "Traceback" not in proc.stderr
    err = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("mimax: warning"))
    assert_message(err, message, tmp_path)
    assert not (tmp_path / "pwned").exists(), "loading the checkpoint executed code"
