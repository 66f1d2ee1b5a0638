"""Command line: ``mimax train|methods`` (``python main.py`` is ``mimax train``).

User mistakes print one line ``mimax: error: ...`` and exit with code 2; no traceback.
"""

from __future__ import annotations

import sys

from mimax import __version__
from mimax.errors import UserError

COMMANDS = {
    "train": "pretrain an encoder (the reference repository's main.py flags)",
    "methods": "list the methods with their paradigm, target update, predictor and objective",
}


def cmd_train(argv: list[str]) -> int:
    from mimax.config import explicit_values
    from mimax.engine.experiment import run_experiment
    from mimax.engine.rundir import find_experiment_dir, resume_config

    given = explicit_values(argv)
    ckpt = None
    if given.get("resume"):
        exp_dir, ckpt = find_experiment_dir(given["resume"])
        cfg = resume_config(exp_dir, {k: v for k, v in given.items() if k != "resume"})
    else:
        from mimax.config import resolve

        cfg = resolve(given)
    results = run_experiment(cfg, resume_checkpoint=ckpt)
    if results is not None:
        from mimax.evaluation.results import results_markdown

        print(results_markdown(results["summary"], cfg.dataset, cfg.num_runs))
        print(f"run directory: {cfg.output_dir}")
    return 0


def cmd_methods(argv: list[str]) -> int:
    from mimax.methods import METHODS

    rows = [("method", "paradigm", "target update", "predictor", "objective")]
    for m in METHODS.values():
        rows.append((m.name, m.paradigm, m.target_update, m.predictor_desc, m.objective_desc))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return 0


HANDLERS = {"train": cmd_train, "methods": cmd_methods}


def main(argv: list[str] | None = None) -> int:
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
    try:
        return HANDLERS[argv[0]](argv[1:])
    except UserError as err:
        print(f"mimax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimax: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
