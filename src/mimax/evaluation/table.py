"""``mimax table RUN_DIR ...``: the paper's Table 1 (methods x datasets, mean ± sample std over seeds).

Each RUN_DIR is a finished experiment (its ``results.json``). A row is an encoder as the training
labelled it (``SimCLR``; ``SDMI (f_θ)`` and ``SDMI (g_ξ)`` for the two SDMI encoders) plus one
``Random init (<architecture>)`` row per architecture; a column is a dataset. One table for the linear
probe and one for kNN. Random-init evaluations of one architecture on one dataset are pooled over all
the experiments given, one value per seed (experiments with the same seed evaluate the same
initialization, so a seed already pooled is not counted again). A trained row given by two experiments
for one dataset is merged only when they are the same configuration (``config.json`` equal apart from
the seed, the number of runs and runtime flags) with disjoint seeds, e.g. seeds 0 and 1-2 trained
separately; anything else is an error, never silently merged or dropped.
"""

from __future__ import annotations

from typing import Any

from mimax.config import RUNTIME_FIELDS
from mimax.errors import UserError
from mimax.evaluation.results import format_mean_std, mean_std
from mimax.methods import METHODS
from mimax.store.rundir import ExperimentDir

PAPER_DATASETS = ["CIFAR10", "CIFAR100", "TinyImageNet", "ImageNet100"]
TABLE_METRICS = {"linear": "Linear probe top-1 (%)", "knn": "kNN top-1 (%)"}
RANDOM_INIT = "Random init"


def read_results(path: str) -> dict[str, Any]:
    exp = ExperimentDir(path)
    results = exp.read_results()
    try:
        summary, dataset, method = results["summary"], results["dataset"], results["method"]
    except (KeyError, TypeError) as exc:
        raise UserError(f"{exp.results_json}: not a mimax results file ({exc})") from None
    if not isinstance(summary, dict):
        raise UserError(f"{exp.results_json}: not a mimax results file (summary is not a mapping)")
    saved = exp.read_config_dict()
    if saved is None and exp.config_json.exists():  # there but damaged: never merge on a guess
        raise UserError(f"{exp.config_json}: not a mimax config (unreadable, or not a JSON object)")
    config = None if saved is None else {k: v for k, v in saved.items()
                                         if k not in RUNTIME_FIELDS | {"seed", "num_runs"}}
    return {"dir": str(exp.path), "dataset": dataset, "method": method, "summary": summary, "config": config,
            "epochs": results.get("epochs"), "num_runs": results.get("num_runs"), "seeds": results.get("seeds")}


def collect(experiments: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """``{(row label, dataset): {metric: per-seed values}}``; random-init rows pooled, duplicates refused."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    owner: dict[tuple[str, str], dict[str, Any]] = {}
    pooled_seeds: dict[tuple[str, str], set[int]] = {}
    for exp in experiments:
        for label, metrics in exp["summary"].items():
            key = (label, exp["dataset"])
            if not label.startswith(RANDOM_INIT):
                if key in owner and not _same_config_other_seeds(owner[key], exp):
                    raise UserError(f"{exp['dir']} and {owner[key]['dir']} both give {label!r} on {exp['dataset']}; "
                                    "pass one experiment per method and dataset (or runs of one configuration "
                                    "with different seeds)")
                merged = owner[key]["seeds"] + exp["seeds"] if key in owner else exp["seeds"]
                owner[key] = {**exp, "seeds": merged}
            seeds = exp["seeds"] or [None] * len(next(iter(metrics.values()))["values"])
            keep = [True] * len(seeds)
            if label.startswith(RANDOM_INIT):  # one value per seed: same seed, same initialization
                done = pooled_seeds.setdefault(key, set())
                keep = [s is None or s not in done for s in seeds]
                done.update(s for s in seeds if s is not None)
            for metric, stat in metrics.items():
                cells.setdefault(key, {}).setdefault(metric, []).extend(
                    float(v) for v, k in zip(stat["values"], keep) if k)
    return cells


def _same_config_other_seeds(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two experiments are seeds of one configuration: equal configs, disjoint known seeds."""
    if a["config"] is None or a["config"] != b["config"] or not a["seeds"] or not b["seeds"]:
        return False
    return not set(a["seeds"]) & set(b["seeds"])


def row_order(label: str, method_of: dict[str, str], methods: list[str]) -> tuple[int, int, str]:
    if label.startswith(RANDOM_INIT):
        return (2, 0, label)
    method = method_of.get(label, "")
    return (0, methods.index(method), label) if method in methods else (1, 0, label)


def format_cell(values: list[float], n_common: int | None) -> str:
    stat = mean_std(values)
    text = format_mean_std(stat)
    return text if stat["n"] == n_common else f"{text} (n={stat['n']})"


def table_markdown(experiments: list[dict[str, Any]]) -> str:
    """Markdown: one table per metric (rows = encoders, columns = datasets) and the list of sources."""
    cells = collect(experiments)
    seen = [e["dataset"] for e in experiments]
    datasets = [d for d in PAPER_DATASETS if d in seen] + [d for d in dict.fromkeys(seen) if d not in PAPER_DATASETS]
    method_of = {label: e["method"] for e in experiments for label in e["summary"]}
    rows = sorted({label for label, _ in cells}, key=lambda r: row_order(r, method_of, list(METHODS)))
    counts = {len(v) for (label, _), c in cells.items() if not label.startswith(RANDOM_INIT) for v in c.values()}
    n_common = counts.pop() if len(counts) == 1 else None
    spread = f"mean ± sample std (ddof = 1) over {n_common} seeds" if n_common else \
        "mean ± sample std (ddof = 1) over n seeds (n given per cell)"
    lines = [f"# Top-1 accuracy (%), {spread}", ""]
    for metric, title in TABLE_METRICS.items():
        lines += [f"## {title}", "", "| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
        for row in rows:
            values = [cells.get((row, d), {}).get(metric) for d in datasets]
            lines.append(f"| {row} | " + " | ".join(format_cell(v, n_common) if v else "–" for v in values) + " |")
        lines.append("")
    lines += ["Sources:", ""]
    lines += [f"- `{e['dir']}`: {e['method']} on {e['dataset']}, {e['epochs']} epochs, {e['num_runs']} seed(s)"
              for e in experiments]
    return "\n".join(lines) + "\n"
