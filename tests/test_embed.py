"""``mimax embed``: one embedding per input file (file name -> vector), NumPy or Parquet, from a run or an
exported backbone; the vectors are the backbone features the run's linear probe sees for those files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from image_fixtures import write_class_tree

from conftest import run_cli, run_mimax

RUN = ["--dataset", "ImageFolder", "--model_name", "SimCLR", "--resnet_width", "4", "--epochs", "1",
       "--batch_size", "16", "--num_threads", "1", "--num_workers", "0", "--mi_interval", "0",
       "--precision", "fp32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    write_class_tree(root / "photos", ["cat", "dog"], per_class=12, size=(20, 16))
    proc = run_cli(["train", *RUN, "--data_dir", str(root / "photos"), "--output_dir", str(root / "run")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root


def reference_features(run_dir, files, dtype: torch.dtype | None = None) -> np.ndarray:
    """The run's own evaluation path: its config's data recipe (EvalImages geometry and normalization) and
    the checkpoint's backbone, built through the training code, not through mimax embed."""
    from mimax.data import build_data
    from mimax.data.images import EvalImages, ImageSplit
    from mimax.evaluation.runs import open_run, rebuild_method
    from mimax.store.checkpoint import load_checkpoint

    run = open_run(str(run_dir))
    data = build_data(run.cfg, torch.device("cpu"), 0)
    path = run.seeds[0].latest_checkpoint()
    method = rebuild_method(run.cfg, load_checkpoint(path), path, data.input_shape)
    split = ImageSplit(3, files=list(files), labels=torch.zeros(len(files), dtype=torch.int64),
                       eval_crop=data.probe_test.split.eval_crop)
    x = torch.stack([EvalImages(split, data.extras["recipe"])[i][0] for i in range(len(files))])
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        return method.encoders()["f"].backbone(x).float().numpy()


def test_a_bf16_run_is_embedded_under_its_precision(trained, tmp_path):
    """The probe of a bf16 run extracts its features under bf16 autocast; mimax embed (from the run and from its
    export) gave the fp32 features instead, 1-2% away from what the docs promise (the probe's features)."""
    run = tmp_path / "bf16"
    proc = run_cli(["train", *RUN[:-1], "bf16", "--data_dir", str(trained / "photos"), "--output_dir", str(run)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted((trained / "photos").rglob("*.png"))
    want = reference_features(run, files, torch.bfloat16)
    assert np.abs(want - reference_features(run, files)).max() > 1e-4  # bf16 is not fp32 here: the test can fail
    assert run_mimax(["export", str(run), "--out", str(tmp_path / "f.pt")]).returncode == 0
    for source in (["--run", str(run)], ["--backbone", str(tmp_path / "f.pt")]):
        proc = run_mimax(["embed", str(trained / "photos"), *source, "--out", str(tmp_path / "e.npz"), "--overwrite"])
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_allclose(np.load(tmp_path / "e.npz")["embeddings"], want, rtol=1e-5, atol=1e-6)


def test_embed_from_a_run_and_from_its_export_agree_with_the_probe_features(trained, tmp_path):
    photos, run = trained / "photos", trained / "run"
    proc = run_mimax(["embed", str(photos), "--run", str(run), "--out", str(tmp_path / "e.npz")])
    assert proc.returncode == 0, proc.stderr
    saved = np.load(tmp_path / "e.npz")
    names, vectors = list(saved["filenames"]), saved["embeddings"]
    files = sorted(p for p in photos.rglob("*.png"))
    assert names == [str(p.relative_to(photos)) for p in files] and names[0] == "cat/cat_0.png"
    assert vectors.dtype == np.float32 and vectors.shape == (24, 32)  # width 4: 8 * 4 backbone features
    np.testing.assert_allclose(vectors, reference_features(run, files), rtol=1e-5, atol=1e-6)

    proc = run_mimax(["export", str(run), "--out", str(tmp_path / "bb" / "f.pt")])
    assert proc.returncode == 0, proc.stderr
    pytest.importorskip("pyarrow")
    single = [str(files[3]), str(files[0])]  # files given one by one: stored under the paths given, in order
    proc = run_mimax(["embed", *single, "--backbone", str(tmp_path / "bb" / "f.pt"),
                      "--out", str(tmp_path / "e.parquet")])
    assert proc.returncode == 0, proc.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column_names == ["filename", "embedding"] and table.column("filename").to_pylist() == single
    got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got, vectors[[3, 0]])  # export + embed = run + embed, exactly


def test_projector_embeddings(trained, tmp_path):
    proc = run_mimax(["embed", str(trained / "photos" / "dog"), "--run", str(trained / "run"), "--projector",
                      "--out", str(tmp_path / "p.npz")])
    assert proc.returncode == 0, proc.stderr
    saved = np.load(tmp_path / "p.npz")
    assert saved["embeddings"].shape[0] == 12 and list(saved["filenames"])[0] == "dog_0.png"
    import json

    assert saved["embeddings"].shape[1] == json.loads((trained / "run" / "config.json").read_text())["projection_dim"]


@pytest.mark.parametrize("args,message", [
    (["--out", "x.csv"], "--out: x.csv must end in .npz (NumPy) or .parquet (Parquet)"),
    (["--backbone", "nope.pt", "--out", "x.npz"], "--backbone: nope.pt is not a file"),
    (["--projector", "--backbone", "b.pt", "--out", "x.npz"],
     "--encoder, --checkpoint and --projector need --run (an exported backbone has no projector)"),
])
def test_embed_bad_input_is_one_line(trained, tmp_path, args, message):
    if "--run" not in args and "--backbone" not in args:
        args = ["--run", str(trained / "run"), *args]
    proc = run_cli(["embed", str(trained / "photos"), *args], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == f"mimax: error: {message}", proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_embed_needs_the_export_description(trained, tmp_path):
    import shutil

    proc = run_cli(["export", str(trained / "run"), "--out", str(tmp_path / "f.pt")])
    assert proc.returncode == 0
    shutil.move(tmp_path / "f.pt.json", tmp_path / "elsewhere.json")
    proc = run_cli(["embed", str(trained / "photos"), "--backbone", str(tmp_path / "f.pt"), "--out",
                      str(tmp_path / "e.npz")])
    assert proc.returncode == 2 and "f.pt.json not found (mimax export writes it beside the backbone)" in proc.stderr
    assert not (tmp_path / "e.npz").exists()


def test_vector_data_runs_and_their_exports_are_refused_alike(trained, tmp_path):
    """A Gaussian run's MLP has no image preprocessing: embedding files with it is refused in one line, from
    the run and from its export (the export used to read as 'not an export description')."""
    from conftest import TINY_GAUSSIAN

    assert run_cli(["train", *TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "1", "--mi_interval", "0",
                    "--output_dir", str(tmp_path / "g")]).returncode == 0
    assert run_cli(["export", str(tmp_path / "g"), "--out", str(tmp_path / "g.pt")]).returncode == 0
    for source, message in ((["--run", str(tmp_path / "g")], f"{tmp_path / 'g'}: a run on vector data (Gaussian)"),
                            (["--backbone", str(tmp_path / "g.pt")],
                             f"--backbone: {tmp_path / 'g.pt'} is the MLP backbone of a run on vector data "
                             "(Gaussian)")):
        proc = run_cli(["embed", str(trained / "photos"), *source, "--out", str(tmp_path / "e.npz")])
        assert proc.returncode == 2
        assert proc.stderr.strip() == f"mimax: error: {message}; mimax embed embeds image files"
        assert not (tmp_path / "e.npz").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (where no file can be created)")
@pytest.mark.parametrize("out", ["/proc/mimax_embed.npz", "/proc/mimax_embed.parquet", "/proc/no/mimax_embed.npz"])
def test_an_unwritable_out_is_one_line_naming_it(trained, tmp_path, out):
    """Not the temporary file's name, not a traceback."""
    proc = run_cli(["embed", str(trained / "photos"), "--run", str(trained / "run"), "--out", out], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"mimax: error: cannot write {out} (No such file or directory)"


def test_a_killed_write_leaves_no_temp_file_once_the_command_succeeds(trained, tmp_path):
    """A SIGKILL inside the atomic write of `--out` left `.<name>.<random>.tmp` beside it (for an embedding as
    large as the output) for good; the next successful write of that file removes its own torn writes. Only
    those: another file's temp and a look-alike name of the user's stay."""
    out = tmp_path / "e.npz"
    args = ["embed", str(trained / "photos"), "--run", str(trained / "run"), "--out", str(out)]
    assert run_mimax(args, kill_at="write:e.npz:1").returncode == -9
    torn = [p.name for p in tmp_path.iterdir()]
    assert not out.exists() and len(torn) == 1 and torn[0].startswith(".e.npz.") and torn[0].endswith(".tmp"), torn
    (tmp_path / ".f.npz.abcdefgh.tmp").write_bytes(b"another file's")
    (tmp_path / ".e.npz.notmine.tmp").write_bytes(b"the user's")
    assert run_mimax(args).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e.npz.notmine.tmp", ".f.npz.abcdefgh.tmp", "e.npz"]
    for command in (["table", str(trained / "run")], ["plot", "accuracy", str(trained / "run")]):
        name = "t.md" if command[0] == "table" else "a.png"
        killed = run_mimax([*command, "--out", str(tmp_path / name)], kill_at=f"write:{name}:1")
        assert killed.returncode == -9 and any(p.name.startswith(f".{name}.") for p in tmp_path.iterdir())
        assert run_mimax([*command, "--out", str(tmp_path / name)]).returncode == 0
        assert not any(p.name.startswith(f".{name}.") for p in tmp_path.iterdir()), command
