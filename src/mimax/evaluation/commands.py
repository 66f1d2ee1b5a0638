"""``mimax eval``, ``mimax table`` and ``mimax export``: argument parsing and printing (the work is in
:mod:`mimax.evaluation.reevaluate`, :mod:`mimax.evaluation.table` and :mod:`mimax.evaluation.export`).

Mistakes raise :class:`~mimax.errors.UserError`; the CLI prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mimax.data.preprocess import EvalPreprocessing
from mimax.errors import OneLineParser, UserError
from mimax.evaluation.embed import check_output, embed_files, from_backbone, from_run, input_files, write_embeddings
from mimax.evaluation.export import FORMATS, export_backbone, sidecar_path
from mimax.evaluation.reevaluate import reevaluate
from mimax.evaluation.results import aggregate, results_markdown
from mimax.evaluation.runs import open_run
from mimax.evaluation.table import read_results, table_csv, table_markdown
from mimax.runtime.device import resolve_device
from mimax.store.atomic import atomic_write_text, check_output_file, remove_torn_writes
from mimax.store.rundir import check_outside_runs


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    """argparse reporting mistakes as one line and exit code 2 (like ``mimax train``)."""
    return OneLineParser(prog=prog, description=description)


def cmd_eval(argv: list[str]) -> int:
    p = _parser("mimax eval", "Re-evaluate checkpoints: linear probe and kNN for every encoder of the method; "
                              "writes seed_<k>/eval_ckpt_epoch_<n>.json")
    p.add_argument("run_dir", metavar="RUN_DIR", help="experiment directory or one of its seed_<k> directories")
    p.add_argument("--checkpoint", metavar="FILE", help="one checkpoint of the run (default: each seed's latest)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--data_dir", help="dataset location, if it moved since training")
    p.add_argument("--num_threads", type=int, help="torch CPU threads (default: training's, from --num_threads or "
                                                 "env.json, which reproduces its numbers exactly)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier re-evaluation file")
    args = p.parse_args(argv)
    if args.num_threads is not None:
        if args.num_threads < 1:
            raise UserError(f"--num_threads: must be >= 1 (got {args.num_threads})")
        torch.set_num_threads(args.num_threads)
    run = open_run(args.run_dir)
    threads = run.cfg.num_threads or run.exp.recorded_threads()  # given, else what training ran on (env.json)
    if args.num_threads is None and threads:  # training's thread count: the same rounding
        torch.set_num_threads(threads)
    device = resolve_device(args.device)
    records = reevaluate(run, args.checkpoint, device, args.overwrite, args.data_dir)
    epochs = sorted({r["epoch"] for r in records})
    print(results_markdown(aggregate(records), run.cfg.dataset, len(records)).rstrip())
    print(f"checkpoint epoch(s) {', '.join(map(str, epochs))} of {run.exp_dir}")
    return 0


def cmd_table(argv: list[str]) -> int:
    p = _parser("mimax table", "The paper's Table 1 shape (rows = methods/encoders incl. random init, "
                               "columns = datasets; linear probe and kNN) from finished experiments")
    p.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="finished experiment directories")
    p.add_argument("--out", metavar="FILE", help="also write the table to FILE: CSV for a .csv suffix (one row per "
                   "method, dataset and metric: n, mean, std, per-seed values), else Markdown")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    if args.out is not None:
        check_outside_runs(Path(args.out), args.run_dirs)
        check_output_file(Path(args.out), args.overwrite)
    experiments = [read_results(d) for d in args.run_dirs]
    text = table_markdown(experiments)
    print(text.rstrip())
    if args.out is not None:
        as_csv = Path(args.out).suffix.lower() == ".csv"
        atomic_write_text(Path(args.out), table_csv(experiments) if as_csv else text)
        remove_torn_writes(Path(args.out))  # what a killed earlier write of this file left beside it
        print(f"wrote {args.out}" + (" (CSV)" if as_csv else ""))
    return 0


def cmd_export(argv: list[str]) -> int:
    p = _parser("mimax export", "Write one encoder's backbone as a file that torchvision or timm loads with "
                                "strict=True, and a JSON sidecar FILE.json with the recipe (docs/evaluation.md)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="experiment directory or one of its seed_<k> directories")
    p.add_argument("--out", metavar="FILE", required=True,
                   help="output file (its folder is created); FILE.json beside it records how to rebuild, load "
                        "and feed it")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="torchvision or timm (a state_dict with that library's parameter names) or safetensors; "
                        "default: safetensors for an --out ending in .safetensors, else the backbone's own library")
    p.add_argument("--encoder", help="which encoder: f_θ or g_ξ for SDMI (ASCII: f_theta, g_xi); default the first")
    p.add_argument("--checkpoint", metavar="FILE", help="one checkpoint of the run (default: the first seed's latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    check_outside_runs(Path(args.out), [args.run_dir], what="exports")  # `--out RUN/.../ckpt.pt --overwrite`
    info = export_backbone(open_run(args.run_dir), args.out, args.encoder, args.checkpoint, args.overwrite,
                           args.format)
    print(f"wrote {args.out} ({info['format']}): backbone of encoder {info['encoder']} ({info['architecture']}, "
          f"input {tuple(info['input_shape'])}) from {info['checkpoint']}")
    print(f"loads into {info['loads_into']}")
    if info["load"]:
        print(info["load"])
    if "preprocessing" in info:
        pre = EvalPreprocessing.from_dict(info["preprocessing"])
        print(f"expects the evaluation preprocessing of {info['dataset']}: {pre.describe()}")
        print(f"as torchvision transforms (import torchvision.transforms as T; from PIL import ImageOps): "
              f"{pre.torchvision_code()}")
    print(f"wrote {sidecar_path(Path(args.out))}: architecture, stem, input shape, normalization, preprocessing "
          "and the loading code (read by mimax embed --backbone)")
    return 0


def cmd_embed(argv: list[str]) -> int:
    p = _parser("mimax embed", "One embedding per input image file (file name -> vector), from a run or an "
                               "exported backbone, with the run's evaluation preprocessing")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files and/or folders (searched recursively)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN_DIR", help="experiment directory or one of its seed_<k> directories")
    src.add_argument("--backbone", metavar="FILE.pt",
                     help="a backbone written by mimax export (FILE.pt.json beside it)")
    p.add_argument("--out", metavar="FILE", required=True, help="FILE.npz (NumPy: filenames, embeddings) or "
                                                               "FILE.parquet (columns filename, embedding; "
                                                               "needs pyarrow)")
    p.add_argument("--encoder", help="with --run: which encoder (f_θ/f_theta or g_ξ/g_xi for SDMI); default the first")
    p.add_argument("--checkpoint", metavar="FILE", help="with --run: one checkpoint (default: the first seed's latest)")
    p.add_argument("--projector", action="store_true", help="with --run: embed with backbone + projector (the "
                                                            "objective's embedding) instead of the backbone features")
    p.add_argument("--batch_size", type=int, default=256, help="images per forward pass (default: 256)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--num_threads", type=int, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    if args.backbone and (args.encoder or args.checkpoint or args.projector):
        raise UserError("--encoder, --checkpoint and --projector need --run (an exported backbone has no projector)")
    if args.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1 (got {args.batch_size})")
    if args.num_threads is not None:
        if args.num_threads < 1:
            raise UserError(f"--num_threads: must be >= 1 (got {args.num_threads})")
        torch.set_num_threads(args.num_threads)
    check_outside_runs(Path(args.out), [args.run] if args.run else [], what="embeddings")
    out = check_output(args.out, args.overwrite)
    files, names = input_files(args.inputs)
    device = resolve_device(args.device)
    embedder = from_run(args.run, args.encoder, args.checkpoint, args.projector) if args.run else \
        from_backbone(args.backbone)
    embeddings = embed_files(embedder, files, device, args.batch_size)
    write_embeddings(out, names, embeddings)
    print(f"wrote {out}: {len(names)} embeddings of dimension {embeddings.shape[1]} ({embedder.source}; "
          f"preprocessing: {embedder.preprocessing.describe()})")
    return 0
