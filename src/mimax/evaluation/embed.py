"""``mimax embed``: one embedding per input image file, from a run's checkpoint or an exported backbone.

The files get the run's evaluation preprocessing (:mod:`mimax.data.preprocess`) and go through the backbone
in eval mode (its features, what the linear probe and kNN see; ``--projector`` adds the projector: the
embedding the objective saw, runs only). The output is a table file name -> vector:

- ``.npz`` (NumPy): ``filenames`` (str, N) and ``embeddings`` (float32, N x D), ``np.load(f)["embeddings"]``;
- ``.parquet`` (needs pyarrow, ``pip install 'mimax[parquet]'``): columns ``filename`` (string) and
  ``embedding`` (fixed-size list of float32), readable by pandas, polars, DuckDB and Spark.

File names are relative to the folder given (when one folder is given), else the paths as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mimax.data.folders import image_files
from mimax.data.images import IMAGE_SUFFIXES, is_image_file
from mimax.data.preprocess import EvalPreprocessing, eval_preprocessing
from mimax.errors import UserError
from mimax.evaluation.export import choose_encoder, load_exported, sidecar_path
from mimax.evaluation.runs import checkpoints_to_use, open_run, rebuild_method
from mimax.naming import printable
from mimax.runtime.device import PRECISION_DTYPES, autocast_to
from mimax.store.atomic import atomic_write_bytes, parent_made_for, remove_torn_writes
from mimax.store.checkpoint import load_checkpoint

FORMATS = (".npz", ".parquet")


@dataclass
class Embedder:
    """A backbone (optionally followed by a projector) and the preprocessing its inputs need."""

    network: nn.Module
    preprocessing: object  # mimax.data.preprocess.EvalPreprocessing
    channels_last: bool
    source: str
    dtype: torch.dtype | None = None  # autocast to the run's --precision, as its probe extracted features


def input_files(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Image files (folders searched recursively, sorted) and the name each is stored under."""

    files, names = [], []
    folders = [Path(p) for p in inputs if Path(p).is_dir()]
    for given in map(Path, inputs):
        if given.is_dir():
            found = image_files(given, recursive=True)
            if not found:
                raise UserError(f"{given}: no image files found (searched recursively)")
            files += found
            names += [str(f.relative_to(given)) if len(inputs) == 1 else str(f) for f in found]
        elif given.is_file():
            if not is_image_file(given):
                raise UserError(f"{given}: not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
            files.append(given)
            names.append(str(given))
        else:
            raise UserError(f"{given}: no such file or folder")
    if len(set(names)) != len(names):
        raise UserError("the same file is given twice" + (" (through two folders)" if folders else ""))
    return files, names


def from_run(run_dir: str, encoder: str | None, checkpoint: str | None, projector: bool) -> Embedder:

    run = open_run(run_dir)
    if run.cfg.architecture == "MLP":
        raise UserError(f"{run_dir}: a run on vector data ({run.cfg.dataset}); mimax embed embeds image files")
    _, path = checkpoints_to_use(run, checkpoint)[0]
    ckpt = load_checkpoint(path)
    if "input_shape" not in ckpt:
        raise UserError(f"{path}: checkpoint without its input shape (written by an older mimax); export it "
                        "with mimax export and embed with --backbone")
    shape = tuple(int(s) for s in ckpt["input_shape"])
    method = rebuild_method(run.cfg, ckpt, path, shape)
    if run.cfg.channels_last:  # the layout training evaluated in (NHWC convolutions round differently)
        method.to(memory_format=torch.channels_last)
    key = choose_encoder(method.encoders(), method.row_labels(), encoder)
    enc = method.encoders()[key]
    network = nn.Sequential(enc.backbone, enc.projector) if projector else enc.backbone
    what = "backbone + projector" if projector else "backbone"
    return Embedder(network.eval(), eval_preprocessing(run.cfg.dataset, shape), run.cfg.channels_last,
                    f"{what} of encoder {key} from {path}", PRECISION_DTYPES.get(run.cfg.precision or "fp32"))


def from_backbone(path: str) -> Embedder:
    """An exported backbone (``mimax export``) and its ``.json`` sidecar (architecture, preprocessing)."""

    file = Path(path)
    if not file.is_file() and (file.exists() or not sidecar_path(file).is_file()):  # a sidecar alone: see below
        raise UserError(f"--backbone: {file} is not a file")
    net, meta = load_exported(file, "--backbone")
    if meta["architecture"] == "MLP":  # as for a run: vector data has no image preprocessing to apply
        raise UserError(f"--backbone: {file} is the MLP backbone of a run on vector data "
                        f"({meta.get('dataset', 'unknown dataset')}); mimax embed embeds image files")
    try:
        pre = EvalPreprocessing.from_dict(meta["preprocessing"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--backbone: {sidecar_path(file)} is not an export description ({exc})") from None
    return Embedder(net, pre, bool(meta.get("channels_last")), f"backbone {file} ({meta['architecture']})",
                    PRECISION_DTYPES.get(meta.get("precision") or "fp32"))  # older sidecars: fp32


@torch.no_grad()
def embed_files(embedder: Embedder, files: list[Path], device: torch.device, batch_size: int = 256) -> np.ndarray:
    """float32 (N, D): one row per file, in order."""

    net = embedder.network.to(device)
    out = []
    for start in range(0, len(files), batch_size):
        x = torch.stack([embedder.preprocessing.load(f) for f in files[start:start + batch_size]])
        x = x.to(device)
        if embedder.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_to(x.device, embedder.dtype):
            out.append(net(x).float().cpu())
    return torch.cat(out).numpy().astype(np.float32)


def check_output(out: str, overwrite: bool) -> Path:
    path = Path(out)
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"--out: {path} must end in .npz (NumPy) or .parquet (Parquet)")
    if path.exists() and not overwrite:
        raise UserError(f"--out: {path} already exists; pass --overwrite to replace it")
    if path.is_dir():
        raise UserError(f"--out: {path} is a directory")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError("--out: writing Parquet needs pyarrow: pip install 'mimax[parquet]' "
                            "(or write .npz)") from None
    return path


def write_embeddings(path: Path, names: list[str], embeddings: np.ndarray) -> None:
    """Write the table through the store's atomic writer (made in memory, then a temporary file in the same
    folder renamed over ``path``); a failure names ``path`` and the system's reason."""
    import io

    buf = io.BytesIO()
    if path.suffix.lower() == ".npz":
        np.savez(buf, filenames=np.array(names, dtype=str), embeddings=embeddings)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()),
                                                   embeddings.shape[1])
        # Parquet strings are UTF-8: a file name that is not is stored as its escape (printable)
        pq.write_table(pa.table({"filename": pa.array([printable(n) for n in names], pa.string()),
                                 "embedding": column}), buf)
    with parent_made_for(path):
        atomic_write_bytes(path, buf.getvalue())
    remove_torn_writes(path)  # what a killed earlier write of this file left beside it
