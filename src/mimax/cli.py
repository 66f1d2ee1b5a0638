"""Command line: ``mimax train|demo|plot|eval|table|export|embed|methods`` (``python main.py`` is ``mimax train``).

User mistakes print one line ``mimax: error: ...`` and exit with code 2; no traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path

from mimax import __version__
from mimax.api import resolved_config
from mimax.config import explicit_values, notes
from mimax.engine.experiment import run_experiment
from mimax.engine.preemption import EXIT_PREEMPTED, Preempted
from mimax.errors import (
    CollapseStopped,
    Interrupted,
    OneLineParser,
    TrainingDiverged,
    UserError,
    environment_error,
)
from mimax.evaluation.results import results_markdown
from mimax.experiments import gaussian
from mimax.methods import METHODS
from mimax.runtime.streams import output_survives_its_reader
from mimax.store.atomic import check_output_file
from mimax.store.rundir import ExperimentDir, check_outside_runs, recorded_model_name

COMMANDS = {
    "train": "pretrain an encoder (the reference repository's main.py flags)",
    "methods": "list the methods with their paradigm, target update, predictor and objective",
    "demo": "the controlled Gaussian-mixture experiments: Figures 2 and 3 and the paper's claims (no data needed)",
    "plot": "draw figures from run directories: `mimax plot mi|trajectories|accuracy RUN_DIR ... --out FIG.png` "
            "(Figures 2, 3; accuracy vs time)",
    "eval": "re-evaluate a run's checkpoints (linear probe + kNN for every encoder)",
    "table": "the paper's Table 1 (methods x datasets, mean ± std) from finished runs",
    "export": "write one encoder's backbone for torchvision, timm or safetensors, with a JSON sidecar (how to load it)",
    "analyze": "one report page (MI, RankMe, LiDAR, alpha-ReQ, alignment/uniformity, probe, kNN) of any encoder",
    "embed": "one embedding per image file (file name -> vector, .npz or .parquet) from a run or exported backbone",
}


def cmd_train(argv: list[str]) -> int:
    given = explicit_values(argv, recorded_model_name)
    cfg, ckpt, fitted = resolved_config(given)
    if not cfg.resume and os.environ.get("RANK", "0") == "0":  # a new run; under torchrun, rank 0 prints
        for line in [*(f"note: {n}" for n in fitted), *notes(cfg)]:  # warnings on stderr, notes on stdout
            print(line, file=sys.stderr if line.startswith("mimax: warning") else sys.stdout, flush=True)
    results = run_experiment(cfg, resume_checkpoint=ckpt)
    if results is not None:
        print(results_markdown(results["summary"], cfg.dataset, cfg.num_runs))
        print(f"run directory: {cfg.output_dir}")
    return 0


def cmd_methods(argv: list[str]) -> int:
    parser = OneLineParser(prog="mimax methods", description="List the built-in methods, those installed "
                           "packages register (entry-point group mimax.methods) and the import paths given.")
    parser.add_argument("paths", nargs="*", metavar="MODULE:CLASS",
                        help="user methods to show too: my_pkg.my_module:MyMethod or path/to/file.py:MyMethod")
    args = parser.parse_args(argv)
    listed, broken = METHODS.listed()
    for reason in broken.values():
        print(f"mimax: warning: {reason}; not listed", file=sys.stderr)
    for path in args.paths:
        listed[path] = METHODS.resolve(path, flag=path)
    rows = [("method", "paradigm", "target update", "predictor", "objective")]
    for key, m in listed.items():
        label = m.name if key == m.name else f"{m.name} ({key})"
        rows.append((label, m.paradigm, m.target_update_desc, m.predictor_desc, m.objective_desc))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    print("\noptions: flag, default [source]; presets per dataset: the recipe (CIFAR100 and TinyImageNet as "
          "CIFAR10; other image datasets: CIFAR10's projector only; sources in scripts/README.md)")
    for m in listed.values():
        print(f"  {m.name}")
        for f in dataclasses.fields(m.Options):
            default = f.default if f.default is not dataclasses.MISSING else "(required)"
            print(f"    --{f.name} {default}  {f.metadata.get('help', '')} [{f.metadata.get('source', '')}]")
        for dataset in ("Gaussian", "CIFAR10", "ImageNet100", "FashionMNIST"):
            preset = m.Options.presets(dataset)
            if preset:
                print(f"    {dataset}: " + ", ".join(f"{k}={v}" for k, v in preset.items()))
    return 0


# what matplotlib writes, by --out's suffix (the raster ones through Pillow)
FIGURE_SUFFIXES = ("png", "pdf", "svg", "jpg", "jpeg", "tif", "tiff", "eps", "ps")


# suffixes that name one format
SAME_FORMAT = {"jpeg": "jpg", "tiff": "tif"}


def figure_format(out: str, given: str | None = None) -> str:
    """The format a figure is written in: ``--format`` when given, else ``--out``'s suffix, png without one.
    A suffix that is no figure format is refused, and so is ``--format`` against a suffix naming another
    format: writing PNG bytes under ``.txt`` or ``.jpg``, or PDF bytes under ``.png``, would give a file its
    name misdescribes (it was, silently). ``--format`` with a suffix that is no figure format (``f.txt``) or
    none is written as asked."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if given is not None:
        if suffix in FIGURE_SUFFIXES and SAME_FORMAT.get(suffix, suffix) != given:
            raise UserError(f"--format {given} contradicts --out {out} (a .{suffix} name); drop --format, or "
                            f"give --out a .{given} name")
        return given
    if not suffix:
        return "png"
    if suffix not in FIGURE_SUFFIXES:
        raise UserError(f"--out: {out}: .{suffix} is not a figure format; expected one of "
                        f"{', '.join('.' + s for s in FIGURE_SUFFIXES)} (or no suffix: png), or pass --format")
    return suffix


def plot_mi_command(argv: list[str]) -> int:
    """``mimax plot mi RUN_DIR [RUN_DIR ...] --out FIG.png [--format pdf|svg]``: the paper's Figure 2."""
    parser = OneLineParser(prog="mimax plot mi", description="MI estimates over training (mi.csv) in the "
                           "paper's Figure 2 layout: SDMI family top row, JMI family bottom row, one column per "
                           "estimator, one curve per configuration (run directories that differ only in their "
                           "seeds are one curve).")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="experiment directories (seeds averaged) or seed_<k> directories")
    parser.add_argument("--out", required=True, metavar="FIG", help="output file")
    parser.add_argument("--format", choices=("png", "pdf", "svg"), default=None,
                        help="file format (default: from --out's suffix, else png)")
    parser.add_argument("--representation", default="embedding",
                        help="which mi.csv representation to draw (embedding, backbone, ...)")
    parser.add_argument("--quantity", choices=("value", "gap"), default="value",
                        help="value: the paired estimate with its shuffled-pair baseline (the paper's Figure 2); "
                             "gap: paired - shuffled, a contrast score (default: value)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    check_outside_runs(Path(args.out), args.run_dirs)
    check_output_file(Path(args.out), args.overwrite)
    fmt = figure_format(args.out, args.format)
    from mimax.plots import group_runs, load_mi_curves, plot_mi, save_figure  # matplotlib: imported where it draws

    runs = [load_mi_curves(g, args.representation) for g in group_runs(args.run_dirs)]  # all read before drawing
    out = save_figure(plot_mi(runs, representation=args.representation, quantity=args.quantity), args.out, fmt)
    print(f"wrote {out}")
    return 0


def plot_trajectories_command(argv: list[str]) -> int:
    """``mimax plot trajectories RUN_DIR [RUN_DIR ...] --out FIG.png``: the paper's Figure 3."""
    parser = OneLineParser(prog="mimax plot trajectories", description="Cluster-center embeddings over "
                            "training (trajectories.json of Gaussian-mixture runs), one panel per run directory "
                            "(the paper's Figure 3).")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="seed_<k> directories, or experiment directories (their first seed is drawn)")
    parser.add_argument("--out", required=True, metavar="FIG",
                        help="output file (.png, .pdf, .svg, .jpg, .tif, .eps; png without a suffix)")
    parser.add_argument("--labels", default=None, help="comma-separated panel titles (default: the methods)")
    parser.add_argument("--points", action="store_true",
                        help="draw the mean embedding of each cluster's points instead of the encoded true mean")
    parser.add_argument("--format", choices=("png", "pdf", "svg"), default=None,
                        help="file format (default: from --out's suffix, else png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    check_outside_runs(Path(args.out), args.run_dirs)
    check_output_file(Path(args.out), args.overwrite)
    fmt = figure_format(args.out, args.format)
    from mimax.plots import plot_trajectories, save_figure  # matplotlib: imported where it draws

    dirs = []
    for d in map(Path, args.run_dirs):  # an experiment: its first seed (numeric order) with trajectories
        seeds = [s.path for s in ExperimentDir(d).seeds() if s.trajectories_json.is_file()]
        dirs.append(seeds[0] if seeds else d)
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(dirs):
        raise UserError(f"--labels: expected {len(dirs)} comma-separated titles, got {len(labels)}")
    fig = plot_trajectories(dirs, labels, kind="point_mean_embedding" if args.points else "center_embedding")
    out = save_figure(fig, args.out, fmt, dpi=100)
    print(f"wrote {out}")
    return 0


def plot_accuracy_command(argv: list[str]) -> int:
    """``mimax plot accuracy RUN_DIR [RUN_DIR ...] --out FIG.png``: accuracy against training time."""
    parser = OneLineParser(prog="mimax plot accuracy", description="Linear-probe and kNN accuracy (eval.csv) "
                           "against training wall time (metrics.csv), one curve per configuration and encoder "
                           "(run directories that differ only in their seeds are one curve, seeds averaged).")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="experiment or seed_<k> directories")
    parser.add_argument("--out", required=True, metavar="FIG", help="output file")
    parser.add_argument("--format", choices=("png", "pdf", "svg"), default=None,
                        help="file format (default: from --out's suffix, else png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    check_outside_runs(Path(args.out), args.run_dirs)
    check_output_file(Path(args.out), args.overwrite)
    fmt = figure_format(args.out, args.format)
    from mimax.plots import group_runs, plot_accuracy_vs_time, save_figure  # matplotlib: imported where it draws

    out = save_figure(plot_accuracy_vs_time(group_runs(args.run_dirs)), args.out, fmt)
    print(f"wrote {out}")
    return 0


PLOTS = {"mi": plot_mi_command, "trajectories": plot_trajectories_command, "accuracy": plot_accuracy_command}


def cmd_plot(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: mimax plot {{{','.join(PLOTS)}}} ... (mimax plot mi --help)")
        return 0
    if not argv or argv[0] not in PLOTS:
        given = f"unknown figure {argv[0]!r}; " if argv else ""
        raise UserError(f"plot: {given}expected one of {', '.join(PLOTS)} (e.g. mimax plot mi RUN_DIR --out FIG.png)")
    return PLOTS[argv[0]](argv[1:])


def cmd_demo(argv: list[str]) -> int:
    return gaussian.main(argv)


def _evaluation_command(name: str):
    """The evaluation command ``name``, imported when it runs: the evaluation commands read images
    (torchvision, seconds at start-up, which `mimax train` on vector data and `mimax demo` never need)."""
    def command(argv: list[str]) -> int:
        from mimax.evaluation import commands

        return getattr(commands, name)(argv)

    return command


def cmd_analyze(argv: list[str]) -> int:
    from mimax.monitors.analyze import cmd_analyze  # torchvision, as the evaluation commands

    return cmd_analyze(argv)


HANDLERS = {"train": cmd_train, "demo": cmd_demo, "methods": cmd_methods, "plot": cmd_plot,
            "eval": _evaluation_command("cmd_eval"), "table": _evaluation_command("cmd_table"),
            "export": _evaluation_command("cmd_export"), "analyze": cmd_analyze,
            "embed": _evaluation_command("cmd_embed")}


def lost_a_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is torch.distributed's report that another process of the run is gone (gloo: "Connection
    closed by peer"; a backend error while a peer exits), as a rank waiting at a barrier sees an error on rank 0."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))


def _safe_streams() -> None:
    """A terminal that cannot show a character (latin-1, ASCII) gets an escape, never a crash."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """The ``mimax`` command; returns its exit code (docs/reliability.md). Its console output may lose its
    reader (``| head``, a closed ssh session) without stopping the work (:mod:`mimax.runtime.streams`)."""
    _safe_streams()
    with output_survives_its_reader():
        return _command(argv)


def _command(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        print(f"mimax {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in HANDLERS:
        lines = [f"usage: mimax {{{','.join(HANDLERS)}}} ... | mimax --version", ""]
        lines += [f"  {name:<10} {COMMANDS[name]}" for name in HANDLERS]
        if argv and argv[0] not in ("-h", "--help"):
            print(f"mimax: error: unknown command {argv[0]!r}; expected one of {', '.join(HANDLERS)}",
                  file=sys.stderr)
            return 2
        print("\n".join(lines))
        return 0 if argv else 2
    # Under torchrun every rank runs this. What every rank raises alike (the flags and launch checks, the run
    # directory rank 0 refused, the stops all ranks take at the same step) is said once, by rank 0; an error a
    # rank > 0 met in its own work (an image of its share) is said by that rank, named.
    rank = int(os.environ.get("RANK", "0"))
    try:
        return HANDLERS[argv[0]](argv[1:])
    except UserError as err:
        own = getattr(err, "rank", 0)
        if rank == 0 or own:
            print(f"mimax: error: {f'(rank {own}) ' if own else ''}{err}", file=sys.stderr)
        return 2
    except Preempted as err:  # SIGTERM / SIGUSR1: checkpointed, run the same command with --resume
        if rank == 0:
            print(f"mimax: {err}", file=sys.stderr)
        return EXIT_PREEMPTED
    except (OSError, MemoryError, RuntimeError) as exc:  # the machine, not the code: full disk, no memory
        if rank > 0 and lost_a_peer(exc):  # another rank stopped first and says why: no traceback here
            print(f"mimax: (rank {rank}) stopped: another process of the run exited (its message is above)",
                  file=sys.stderr)
            return 1
        message = environment_error(exc)
        if message is None:
            raise
        print(f"mimax: error: {message}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:  # not a user mistake: its own exit code (docs/reliability.md)
        if rank == 0:  # every rank checks the same all-reduced loss and gradients
            print(f"mimax: error: {err}", file=sys.stderr)
        return 3
    except CollapseStopped as err:  # --stop_on_collapse: its own exit code (docs/monitoring.md)
        if rank == 0:  # rank 0 decides and broadcasts the stop
            print(f"mimax: stopped: {err}", file=sys.stderr)
        return 4
    except KeyboardInterrupt as err:  # every rank gets the terminal's Ctrl-C: rank 0 says it
        if rank == 0:
            print(f"mimax: interrupted{f'; {err}' if isinstance(err, Interrupted) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
