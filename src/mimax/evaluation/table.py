"""``mimax table RUN_DIR ...``: the paper's Table 1 (methods x datasets, mean ± sample std over seeds).

Each RUN_DIR is a finished experiment (its ``results.json``). A row is an encoder as the training
labelled it (``SimCLR``; ``SDMI (f_θ)`` and ``SDMI (g_ξ)`` for the two SDMI encoders) plus the random-init
rows; a column is a dataset. One table for the linear probe and one for kNN.

Random init: a baseline is determined by the configuration fields in :data:`BASELINE_FIELDS` (dataset,
architecture and width, image size, subsets, kNN settings, ...) and the seed. Baselines are pooled per
such configuration over all the experiments given, one value per seed; the same configuration and seed
evaluated by two experiments must give identical numbers (they evaluate the same initialization), else
the table is refused. Configurations that differ get their own row, labelled with the fields that
differ (``Random init (ResNet18, resnet_width 16)``), and the Sources list says which row each
experiment's baseline is. A trained row given by two experiments
for one dataset is merged only when they are the same configuration (``config.json`` equal apart from
the seed, the number of runs and runtime flags other than ``precision``) with disjoint seeds, e.g. seeds 0
and 1-2 trained separately; anything else is an error, never silently merged or dropped. The same rule
(:func:`run_configuration`, :func:`check_mergeable`) makes run directories one curve in ``mimax plot``.

Δ vs random init: per trained row, the mean ± sample std over seeds of the paired difference (trained minus
the same experiment's random init of the same seed), in points, for the experiments that evaluated their
random init.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from mimax.config import RUNTIME_FIELDS, Config
from mimax.errors import UserError
from mimax.evaluation.results import format_mean_std, mean_std
from mimax.methods import METHODS
from mimax.store.rundir import ExperimentDir

PAPER_DATASETS = ["CIFAR10", "CIFAR100", "TinyImageNet", "ImageNet100"]
TABLE_METRICS = {"linear": "Linear probe top-1 (%)", "knn": "kNN top-1 (%)"}
RANDOM_INIT = "Random init"
# The configuration fields that determine a random-init evaluation (with the seed): the backbone built,
# the data it sees, how the evaluation is done. Gaussian-mixture fields matter for that dataset only.
BASELINE_FIELDS = ("architecture", "resnet_width", "mlp_hidden_dim", "image_size", "train_subset", "test_subset",
                   "class_list", "no_labels", "knn_k", "knn_temperature", "channels_last", "precision")
# Runtime flags (free to change at resume) that still change what a run computes: seeds trained in bf16 and in fp32
# are two configurations, never one cell (the same seed reads kNN 50.2% in bf16 and 55.3% in fp32 on Digits).
RESULT_RUNTIME_FIELDS = frozenset({"precision"})
GAUSSIAN_BASELINE_FIELDS = ("gm_clusters", "gm_dim", "gm_radius", "gm_sigma", "gm_view_noise", "gm_train_size",
                            "gm_test_size", "gm_data_seed", "augmentation")


def read_results(path: str) -> dict[str, Any]:
    exp = ExperimentDir(path)
    results = exp.read_results()
    try:
        summary, dataset, method = results["summary"], results["dataset"], results["method"]
    except (KeyError, TypeError) as exc:
        raise UserError(f"{exp.results_json}: not a mimax results file ({exc})") from None
    if not isinstance(summary, dict):
        raise UserError(f"{exp.results_json}: not a mimax results file (summary is not a mapping)")
    if not summary:
        raise UserError(f"{exp.path}: no accuracies to table (a run without labels, --no_labels or --dataset Folder, "
                        "has no linear probe or kNN)")
    saved = exp.read_config_dict()
    if saved is None and exp.config_json.exists():  # there but damaged: never merge on a guess
        raise UserError(f"{exp.config_json}: not a mimax config (unreadable, or not a JSON object)")
    saved = with_defaults(saved)
    return {"dir": str(exp.path), "dataset": dataset, "method": method, "summary": summary,
            "config": run_configuration(saved),
            "baseline": baseline_config(saved, dataset, results.get("architecture")),
            "epochs": results.get("epochs"), "num_runs": results.get("num_runs"), "seeds": results.get("seeds")}


def with_defaults(saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """A saved ``config.json`` with the fields added to mimax after the run was made (the run had their default)."""
    if saved is None:
        return None
    return {**{k: v for k, v in Config().to_dict().items() if k not in saved}, **saved}


def run_configuration(saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """What two runs must share to be seeds of one configuration (one table cell, one figure curve): the saved
    config (:func:`with_defaults`) without the seed, the number of runs and the runtime flags other than
    :data:`RESULT_RUNTIME_FIELDS`; None when the config is unknown (such a run is never merged)."""
    saved = with_defaults(saved)
    if saved is None:
        return None
    return {k: v for k, v in saved.items() if k not in (RUNTIME_FIELDS - RESULT_RUNTIME_FIELDS) | {"seed", "num_runs"}}


def check_mergeable(first: dict[str, Any], other: dict[str, Any], label: str, dataset: str) -> None:
    """Refuse, in one line, to merge two runs that both give ``label`` on ``dataset`` unless they are seeds of
    one configuration (:func:`run_configuration` equal, known and disjoint seeds). ``first`` and ``other`` are
    ``{"dir", "config", "seeds"}``. The one rule of ``mimax table`` (one cell) and ``mimax plot`` (one curve)."""
    if not _same_config_other_seeds(first, other):
        raise UserError(f"{other['dir']} and {first['dir']} both give {label!r} on {dataset}"
                        f"{_why_not_merged(first, other)}; pass one experiment per method and dataset "
                        "(or runs of one configuration with different seeds)")


def baseline_config(config: dict[str, Any] | None, dataset: str, architecture: str | None) -> tuple:
    """The ``(field, value)`` pairs that determine an experiment's random-init baseline (with the seed).
    Without a config.json (older runs) only the architecture is known, and the pairs say so."""
    if config is None:
        return (("architecture", architecture), ("config", "unknown"))
    names = BASELINE_FIELDS + (GAUSSIAN_BASELINE_FIELDS if dataset == "Gaussian" else ())
    mlp = config.get("architecture") == "MLP"
    unused = {"resnet_width", "image_size", "channels_last"} if mlp else {"mlp_hidden_dim"}
    names = tuple(n for n in names if n not in unused)
    return tuple((name, config.get(name)) for name in names)


def baseline_labels(keys: list[tuple]) -> dict[tuple, str]:
    """``Random init (<architecture>[, <field> <value> ...])`` per baseline configuration, naming the fields
    in which the configurations given differ (the architecture always)."""
    differing = [i for i, (name, _) in enumerate(keys[0]) if name != "architecture"
                 and len({dict(k).get(name, "?") for k in keys}) > 1] if keys else []
    labels = {}
    for key in keys:
        values = dict(key)
        extra = "".join(f", {name} {values.get(name)}" for name, _ in (keys[0][i] for i in differing))
        labels[key] = f"{RANDOM_INIT} ({values.get('architecture')}{extra})"
    return labels


def collect(experiments: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """``{(row label, dataset): {metric: per-seed values}}``; random-init rows pooled per baseline
    configuration (identical numbers required for a seed given twice), duplicates refused."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    owner: dict[tuple[str, str], dict[str, Any]] = {}
    baselines: dict[tuple, dict[Any, tuple[dict[str, float], str]]] = {}  # (dataset, config) -> seed -> values
    for exp in experiments:
        for label, metrics in exp["summary"].items():
            key = (label, exp["dataset"])
            if label.startswith(RANDOM_INIT):
                _pool_baseline(baselines.setdefault((exp["dataset"], exp["baseline"]), {}), exp, metrics)
                continue
            if key in owner:
                check_mergeable(owner[key], exp, label, exp["dataset"])
            merged = owner[key]["seeds"] + exp["seeds"] if key in owner else exp["seeds"]
            owner[key] = {**exp, "seeds": merged}
            for metric, stat in metrics.items():
                cells.setdefault(key, {}).setdefault(metric, []).extend(float(v) for v in stat["values"])
    labels = baseline_labels(list(dict.fromkeys(config for _, config in baselines)))
    for (dataset, config), per_seed in baselines.items():
        cell = cells.setdefault((labels[config], dataset), {})
        for values, _ in per_seed.values():
            for metric, value in values.items():
                cell.setdefault(metric, []).append(value)
    return cells


def paired_deltas(experiments: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """``{(row label, dataset): {metric: per-seed differences}}``: ``trained_i - random_init_i`` for each seed
    ``i`` of an experiment that has a random-init row (its rows list the seeds in the same order)."""
    deltas: dict[tuple[str, str], dict[str, list[float]]] = {}
    for exp in experiments:
        random = [m for label, m in exp["summary"].items() if label.startswith(RANDOM_INIT)]
        if not random:
            continue
        for label, metrics in exp["summary"].items():
            if label.startswith(RANDOM_INIT):
                continue
            for metric in TABLE_METRICS:
                trained, base = metrics.get(metric, {}).get("values"), random[0].get(metric, {}).get("values")
                if trained and base and len(trained) == len(base):
                    deltas.setdefault((label, exp["dataset"]), {}).setdefault(metric, []).extend(
                        float(t) - float(b) for t, b in zip(trained, base))
    return deltas


def format_delta(values: list[float], n_common: int | None) -> str:
    """``+3.40 ± 1.20`` (points, signed)."""
    stat = mean_std(values)
    text = f"{100 * stat['mean']:+.2f}" + ("" if math.isnan(stat["std"]) else f" ± {100 * stat['std']:.2f}")
    return text if stat["n"] == n_common else f"{text} (n={stat['n']})"


def _pool_baseline(per_seed: dict[Any, tuple[dict[str, float], str]], exp: dict[str, Any],
                   metrics: dict[str, Any]) -> None:
    """Add an experiment's random-init values, one per seed; a seed already pooled must agree exactly."""
    n = len(next(iter(metrics.values()))["values"])
    seeds = exp["seeds"] if exp["seeds"] and len(exp["seeds"]) == n else [(exp["dir"], i) for i in range(n)]
    for i, seed in enumerate(seeds):
        # backbone metrics only: the embedding's probe depends on the method's projector, not the baseline
        values = {metric: float(stat["values"][i]) for metric, stat in metrics.items() if metric in TABLE_METRICS}
        if seed in per_seed and per_seed[seed][0] != values:
            other_values, other = per_seed[seed]
            diff = ", ".join(f"{m} {100 * other_values.get(m, math.nan):.2f} vs {100 * v:.2f}"
                             for m, v in values.items() if other_values.get(m) != v)
            raise UserError(f"{exp['dir']} and {other} have the same random-init configuration and seed {seed} "
                            f"on {exp['dataset']} but different random-init numbers ({diff}); refusing to merge "
                            "them: give experiments whose baselines agree, or table them separately")
        per_seed.setdefault(seed, (values, exp["dir"]))


def baseline_row_of(experiments: list[dict[str, Any]]) -> dict[str, str]:
    """Each experiment's random-init row label (as :func:`collect` names it), by directory."""
    keys = list(dict.fromkeys(e["baseline"] for e in experiments
                              if any(label.startswith(RANDOM_INIT) for label in e["summary"])))
    labels = baseline_labels(keys)
    return {e["dir"]: labels[e["baseline"]] for e in experiments if e["baseline"] in labels}


def _why_not_merged(a: dict[str, Any], b: dict[str, Any]) -> str:
    """`` (configurations differ in: precision bf16 vs fp32, ...)`` or `` (seeds 0 in both)``: what keeps two
    experiments from being seeds of one configuration, when it is known."""
    if a["config"] is None or b["config"] is None:
        return ""
    differ = [f"{k} {a['config'].get(k)} vs {b['config'].get(k)}" for k in sorted(set(a["config"]) | set(b["config"]))
              if k not in ("output_dir", "resume") and a["config"].get(k) != b["config"].get(k)]
    if differ:
        return f" (configurations differ in: {', '.join(differ[:4])}{', ...' if len(differ) > 4 else ''})"
    common = sorted(set(a["seeds"] or []) & set(b["seeds"] or []))
    return f" (seed {', '.join(map(str, common))} in both)" if common else ""


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


def _describe(baseline: tuple) -> str:
    return ", ".join(f"{name} {value}" for name, value in baseline if value is not None and value is not False)


def _layout(experiments: list[dict[str, Any]]) -> tuple[dict, list[str], list[str], int | None]:
    """The table's cells (:func:`collect`), its columns (paper datasets first), its rows (methods in
    registry order, then others, then random init) and the seed count shared by every trained cell (None
    when they differ)."""
    cells = collect(experiments)
    seen = [e["dataset"] for e in experiments]
    datasets = [d for d in PAPER_DATASETS if d in seen] + sorted(set(seen) - set(PAPER_DATASETS))
    method_of = {label: e["method"] for e in experiments for label in e["summary"]}
    rows = sorted({label for label, _ in cells}, key=lambda r: row_order(r, method_of, list(METHODS)))
    counts = {len(v) for (label, _), c in cells.items() if not label.startswith(RANDOM_INIT) for v in c.values()}
    return cells, datasets, rows, (counts.pop() if len(counts) == 1 else None)


CSV_COLUMNS = ("method", "dataset", "metric", "n", "mean", "std", "values")


def table_csv(experiments: list[dict[str, Any]]) -> str:
    """CSV, one row per (row label, dataset, metric): ``n``, ``mean``, sample ``std`` (ddof = 1, empty for one
    seed) and the per-seed ``values`` joined by ``;``, as fractions (not %). The Δ-vs-random-init cells
    follow as metrics ``<metric>_delta_vs_random_init``. Same cells and merging rules as the Markdown."""
    cells, datasets, rows, _ = _layout(experiments)
    deltas = paired_deltas(experiments)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for source, suffix in ((cells, ""), (deltas, "_delta_vs_random_init")):
        for row in rows:
            for dataset in datasets:
                for metric in TABLE_METRICS:
                    values = source.get((row, dataset), {}).get(metric)
                    if not values:
                        continue
                    stat = mean_std(values)
                    std = "" if math.isnan(stat["std"]) else repr(stat["std"])
                    writer.writerow([row, dataset, metric + suffix, stat["n"], repr(stat["mean"]), std,
                                     ";".join(repr(float(v)) for v in values)])
    return out.getvalue()


def table_markdown(experiments: list[dict[str, Any]]) -> str:
    """Markdown: one table per metric (rows = encoders, columns = datasets) and the list of sources."""
    cells, datasets, rows, n_common = _layout(experiments)
    spread = f"mean ± sample std (ddof = 1) over {n_common} seeds" if n_common else \
        "mean ± sample std (ddof = 1) over n seeds (n given per cell)"
    lines = [f"# Top-1 accuracy (%), {spread}", ""]
    for metric, title in TABLE_METRICS.items():
        lines += [f"## {title}", "", "| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
        for row in rows:
            values = [cells.get((row, d), {}).get(metric) for d in datasets]
            lines.append(f"| {row} | " + " | ".join(format_cell(v, n_common) if v else "–" for v in values) + " |")
        lines.append("")
    deltas = paired_deltas(experiments)
    for metric, title in TABLE_METRICS.items():
        delta_rows = [row for row in rows if any(metric in deltas.get((row, d), {}) for d in datasets)]
        if not delta_rows:
            continue
        lines += [f"## {title.replace(' (%)', '')}: Δ vs random init (points, per seed: trained − random init)", "",
                  "| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
        for row in delta_rows:
            values = [deltas.get((row, d), {}).get(metric) for d in datasets]
            lines.append(f"| {row} | " + " | ".join(format_delta(v, n_common) if v else "–" for v in values) + " |")
        lines.append("")
    lines += ["Sources:", ""]
    row_of = baseline_row_of(experiments)
    lines += [f"- `{e['dir']}`: {e['method']} on {e['dataset']}, {e['epochs']} epochs, {e['num_runs']} seed(s)"
              + (f"; {_describe(e['baseline'])}; random init in row '{row_of[e['dir']]}'" if e["dir"] in row_of else "")
              for e in experiments]
    return "\n".join(lines) + "\n"
