"""Data files and folders that are not what they seem: a mimax run directory written inside an image folder,
IDX files whose header and size disagree (or that are huge), a pipe or a folder given where a file is
expected, a file given where a folder is expected, and an image that cannot be read for its permissions."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from image_fixtures import idx_bytes, write_class_tree, write_image

from conftest import ROOT, run_cli, run_mimax
from mimax.config import resolve
from mimax.config.parsing import explicit_values
from mimax.data import build_data
from mimax.data.folders import class_names, image_files
from mimax.data.idx import read_idx
from mimax.data.imagenet100 import read_class_list
from mimax.data.images import decode_image, image_size_of
from mimax.errors import ConfigError, DataError
from mimax.evaluation.embed import input_files
from mimax.naming import RUN_MARKER
from mimax.store.rundir import MARKER

CPU = torch.device("cpu")


def make_cfg(dataset: str, data_dir: Path, **kw):
    values = dict(model_name="SimCLR", dataset=dataset, data_dir=str(data_dir), batch_size=4, num_workers=0,
                  resnet_width=8, monitor_size=6, epochs=2, warmup_epochs=0, image_size=16)
    return resolve({**values, **kw})


# --- a run directory inside the data folder -------------------------------------------------------------

def test_run_directory_inside_a_folder_dataset_is_not_training_data(tmp_path):
    """Seed 0 of a 2-seed run writes seed_0/monitors.png into the data folder; seed 1 trained on it too (9
    images instead of 8). A run directory (the marker mimax writes) is now left out of every image scan:
    Folder, ImageFolder's class discovery and class folders, and mimax embed's folder search."""
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    originals = sorted(photos / f"{i}.png" for i in range(8))
    for path in originals:
        write_image(path, rng, (24, 24))
    proc = run_mimax(["train", "--model_name", "JMI", "--dataset", "Folder", "--data_dir", str(photos),
                      "--epochs", "1", "--resnet_width", "8", "--batch_size", "4", "--monitor_size", "64",
                      "--num_threads", "1", "--num_runs", "2", "--output_dir", str(photos / "run")])
    assert proc.returncode == 0, proc.stderr
    run = photos / "run"
    assert MARKER == RUN_MARKER and (run / RUN_MARKER).is_file()
    written = sorted(p for p in run.rglob("*.png"))
    assert run / "seed_0" / "monitors.png" in written  # a real image under the data folder
    notes = [line for line in proc.stdout.splitlines() if "training images" in line]
    assert len(notes) == 2 and all("the dataset has 8 training images" in line for line in notes), notes
    # the scans themselves, on the folder that now holds the finished 2-seed run
    assert image_files(photos, recursive=True) == originals
    assert input_files([str(photos)])[0] == originals
    assert build_data(make_cfg("Folder", photos, monitor_size=64), CPU, 0).monitor_views[0].shape[0] == 8
    # ImageFolder: the same run (its real marker and figures) copied into a class tree is no class, and a run
    # inside a class folder adds no image to that class
    tree = tmp_path / "tree"
    write_class_tree(tree, ["a", "b"], per_class=3)
    shutil.copytree(run, tree / "run")
    shutil.copytree(run, tree / "a" / "run")
    assert class_names(tree, "layout") == ["a", "b"]
    data = build_data(make_cfg("ImageFolder", tree), CPU, 0)
    files = data.probe_train.split.files + data.probe_test.split.files
    assert sorted(files) == sorted(tree / c / f"{c}_{i}.png" for c in "ab" for i in range(3))
    # a folder merely named like a run, without the marker, is still searched
    (tree / "b" / "run").mkdir()
    write_image(tree / "b" / "run" / "x.png", rng, (24, 24))
    assert tree / "b" / "run" / "x.png" in image_files(tree / "b", recursive=True)


# --- IDX files: header first, then exactly the declared bytes ----------------------------------------------

def write_idx(path: Path, blob: bytes) -> Path:
    path.write_bytes(gzip.compress(blob, compresslevel=1) if path.suffix == ".gz" else blob)
    return path


def peak_bytes(call) -> tuple[int, BaseException | None]:
    """Peak bytes Python and numpy allocated during ``call()`` (tracemalloc), and what it raised."""
    tracemalloc.start()
    try:
        call()
        raised = None
    except BaseException as exc:  # noqa: BLE001 (returned to the test)
        raised = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, raised


def test_idx_bad_magic_on_a_huge_file_reads_only_the_header(tmp_path):
    """A 4 GiB (sparse) file with a wrong magic number was read whole before its header was looked at."""
    path = tmp_path / "train-images-idx3-ubyte"
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00" + b"\x00" * 12)
        f.truncate(4 << 30)
    start = time.monotonic()
    peak, raised = peak_bytes(lambda: read_idx(path, 3))
    assert isinstance(raised, DataError), raised
    assert str(raised) == f"{path}: not a uint8 IDX file with 3 dimension(s) (bad magic number)"
    assert peak < 1 << 20 and time.monotonic() - start < 2
    # a right header on the same huge file: its size disagrees with the header, said before reading the values
    with open(path, "r+b") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 60000, 28, 28))
    peak, raised = peak_bytes(lambda: read_idx(path, 3))
    assert isinstance(raised, DataError) and peak < 1 << 20
    assert str(raised) == (f"{path}: IDX header says (60000, 28, 28) (47040000 bytes), file holds "
                           f"{(4 << 30) - 16} bytes")


def test_idx_gz_header_is_read_from_the_stream(tmp_path):
    """A .gz whose stream starts with a wrong magic number: only its first bytes are decompressed (the old
    reader decompressed the whole stream, here 256 MiB, first)."""
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b"\x00\x00\x0d\x03")  # float64 values: not uint8
        zeros = bytes(1 << 24)
        for _ in range(16):
            f.write(zeros)
    peak, raised = peak_bytes(lambda: read_idx(path, 3))
    assert isinstance(raised, DataError) and "(bad magic number)" in str(raised) and str(raised).startswith(str(path))
    assert peak < 4 << 20
    # a header declaring more bytes than this machine's memory: refused before any allocation
    write_idx(path, bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**16))
    peak, raised = peak_bytes(lambda: read_idx(path, 3))
    assert isinstance(raised, DataError) and "more than this machine's memory" in str(raised) and peak < 1 << 20


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_truncated_and_trailing_data_are_refused(tmp_path, suffix):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    blob = idx_bytes(images)
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    assert np.array_equal(read_idx(write_idx(path, blob), 3), images)
    held = "file holds 3915 bytes" if not suffix else "the data holds only 3915 bytes (truncated)"
    write_idx(path, blob[:-5])
    with pytest.raises(DataError) as err:
        read_idx(path, 3)
    assert str(err.value) == f"{path}: IDX header says (5, 28, 28) (3920 bytes), {held}"
    held = "file holds 3921 bytes" if not suffix else "the data holds more (trailing bytes)"
    write_idx(path, blob + b"\x00")
    with pytest.raises(DataError) as err:
        read_idx(path, 3)
    assert str(err.value) == f"{path}: IDX header says (5, 28, 28) (3920 bytes), {held}"
    write_idx(path, blob[:10])
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(path, 3)


def test_idx_corrupt_gzip_stream_names_the_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    blob = gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))
    path.write_bytes(blob[:len(blob) // 2])  # cut inside the compressed stream
    with pytest.raises(DataError) as err:
        read_idx(path, 1)
    assert str(err.value).startswith(f"{path}: cannot read (") and "\n" not in str(err.value)


# --- a pipe or a folder where a file is expected, a file where a folder is expected --------------------------

def pipe_path(text: str) -> tuple[str, int]:
    """A pipe holding ``text``, as a shell's ``<(printf ...)`` gives it: ``/dev/fd/N`` (its read end)."""
    read_end, write_end = os.pipe()
    os.write(write_end, text.encode())
    os.close(write_end)
    return f"/dev/fd/{read_end}", read_end


def test_config_from_a_pipe_is_read_and_a_folder_is_refused_as_a_folder(tmp_path):
    """``--config <(printf ...)`` said "file not found: /dev/fd/63". The file is read twice (for the method's
    name, then for the values): a pipe's bytes are kept from the first read."""
    path, fd = pipe_path("model_name: JMI\ndataset: Digits\nepochs: 3\n")
    try:
        given = explicit_values(["--config", path])
    finally:
        os.close(fd)
    assert given["model_name"] == "JMI" and given["dataset"] == "Digits" and given["epochs"] == 3
    with pytest.raises(ConfigError) as err:
        explicit_values(["--config", str(tmp_path)])
    assert str(err.value) == f"--config: {tmp_path}: is a directory, not a file"
    with pytest.raises(ConfigError) as err:
        explicit_values(["--config", str(tmp_path / "none.yaml")])
    assert str(err.value) == f"--config: file not found: {tmp_path / 'none.yaml'}"
    proc = run_cli(["train", "--config", str(tmp_path), "--output_dir", str(tmp_path / "out")])
    assert proc.returncode == 2 and proc.stderr == f"mimax: error: --config: {tmp_path}: is a directory, not a file\n"
    assert not (tmp_path / "out").exists()


def test_a_class_list_folder_is_refused_as_a_folder(tmp_path):
    with pytest.raises(DataError) as err:
        read_class_list(str(tmp_path))
    assert str(err.value) == (f"{tmp_path}: --class_list is a directory, not a file; expected one WordNet id "
                              "per line")
    with pytest.raises(DataError, match="--class_list file not found"):
        read_class_list(str(tmp_path / "none.txt"))


@pytest.mark.parametrize("dataset", ["Folder", "ImageFolder", "FashionMNIST", "TinyImageNet", "ImageNet100"])
def test_data_dir_that_is_a_file_says_so(tmp_path, dataset):
    """A regular file as --data_dir said "directory not found", as if it did not exist."""
    (tmp_path / "afile").write_text("x")
    proc = run_cli(["train", "--model_name", "JMI", "--dataset", dataset, "--data_dir", str(tmp_path / "afile"),
                    "--output_dir", str(tmp_path / "out")])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"mimax: error: {tmp_path / 'afile'}: is a file, not a directory; expected ")
    assert not (tmp_path / "out").exists()


# --- an image that cannot be read for its permissions --------------------------------------------------------

CHECK_IMAGE = """
import sys
from pathlib import Path
from mimax.data.images import decode_image, image_size_of
from mimax.errors import DataError
for read in (image_size_of, lambda p: decode_image(p, 3)):
    try:
        read(Path(sys.argv[1]))
    except DataError as exc:
        print(exc)
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to drop root's DAC override")
def test_unreadable_image_for_permissions_asks_to_fix_permissions_not_to_delete(tmp_path):
    """"corrupt or unreadable image file (PermissionError); delete or replace it" advised deleting a good file.
    Run as root without the capabilities that bypass file permissions (as an ordinary user is)."""
    image = tmp_path / "cat.png"
    write_image(image, np.random.default_rng(0))
    image.chmod(0)
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all"] \
        if os.geteuid() == 0 else []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*drop, sys.executable, "-c", CHECK_IMAGE, str(image)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    expected = (f"{image}: cannot read this image (permission denied); fix its permissions (chmod a+r) or the "
                "permissions of its folder")
    assert proc.stdout.splitlines() == [expected, expected]
    image.chmod(0o644)  # the same file, readable: a good image
    assert image_size_of(image) == (20, 16) and decode_image(image, 3).shape == (3, 16, 20)


def test_a_class_list_pipe_is_refused_for_a_run_which_must_read_it_again(tmp_path):
    """`--class_list <(grep ...)` trained, but config.json recorded /dev/fd/63: the run could then neither be
    resumed nor evaluated ("--class_list file not found"). A run's class list must be a file."""
    for split in ("train", "val"):
        write_class_tree(tmp_path / "data" / split, ["n01440764", "n01443537"], per_class=2, ext=".JPEG")
    path, fd = pipe_path("n01440764\nn01443537\n")
    try:
        proc = run_cli(["train", "--model_name", "JMI", "--dataset", "ImageNet100", "--data_dir",
                        str(tmp_path / "data"), "--class_list", path, "--output_dir", str(tmp_path / "out")])
    finally:
        os.close(fd)
    assert proc.returncode == 2 and proc.stderr == (
        f"mimax: error: {path}: --class_list is not a regular file (a pipe?): the run records this path and reads "
        "it again to resume or evaluate; give a file\n")
    assert not (tmp_path / "out").exists()


def test_image_folder_with_data_dir_dot_and_the_default_runs_folder_trains(tmp_path):
    """`mimax train --dataset ImageFolder --data_dir .` made runs/<name>/ (the run) before reading the data,
    and runs/ (no marker: it only holds runs) became a class: "runs: empty class folder", every time."""
    write_class_tree(tmp_path, ["a", "b"], per_class=6)  # one folder per class, no split folders
    proc = run_cli(["train", "--model_name", "JMI", "--dataset", "ImageFolder", "--data_dir", ".", "--epochs", "1",
                    "--resnet_width", "4", "--batch_size", "4", "--monitor_size", "8", "--num_threads", "1",
                    "--num_workers", "0"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "results.json").is_file() and "runs" not in (run / "seed_0" / "eval.csv").read_text()
