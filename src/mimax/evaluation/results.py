"""Per-run results and their aggregation: mean ± sample std (ddof = 1) over seeds (docs/methods.md §8)."""

from __future__ import annotations

import math
from typing import Any

METRIC_TITLES = {"linear": "linear top-1", "knn": "kNN top-1", "linear_embedding": "linear top-1 (embedding)"}


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof = 1; NaN for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "n": n, "values": list(values)}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{row label: {metric: mean_std}}`` over the runs' ``final`` and ``random_init`` sections."""
    table: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for section in ("random_init", "final"):
            for label, metrics in run.get(section, {}).items():
                for metric, value in metrics.items():
                    table.setdefault(label, {}).setdefault(metric, []).append(value)
    return {label: {m: mean_std(v) for m, v in metrics.items()} for label, metrics in table.items()}


def format_mean_std(stat: dict[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` of a :func:`mean_std` record, times ``scale`` (100: accuracies in %); the mean alone
    for a single value."""
    if stat["n"] < 2 or stat["std"] is None or math.isnan(stat["std"]):  # None: as results.json holds it
        return f"{stat['mean'] * scale:.{digits}f}"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def results_markdown(summary: dict[str, dict[str, dict[str, Any]]], dataset: str, n_runs: int) -> str:
    """A Markdown table, one row per encoder (random-init baseline included), accuracies in %."""
    if not summary:  # nothing was evaluated: say so instead of an empty table
        return (f"# Results on {dataset}\n\nNo linear probe or kNN: the run has no labels (--no_labels, or "
                "--dataset Folder); see mi.csv and metrics.csv for its monitors.\n")
    metrics = [m for m in METRIC_TITLES if any(m in row for row in summary.values())]
    lines = [f"# Results on {dataset} (mean ± sample std over {n_runs} run{'s' if n_runs > 1 else ''}, %)", "",
             "| encoder | " + " | ".join(METRIC_TITLES[m] for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for label, row in summary.items():
        cells = [format_mean_std(row[m]) if m in row else "–" for m in metrics]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
