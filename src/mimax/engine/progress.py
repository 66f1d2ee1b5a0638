"""What a run prints while it trains: one line per epoch, short lines for the other phases, a summary.

Lines go to stdout (flushed) whether or not it is a terminal, so a job whose output is redirected to a
file shows its progress there; the tqdm bar (terminal only) is transient and each epoch's line replaces it.
The loop calls :class:`ConsoleLog`; the formatting is in small pure functions, tested on their own.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

# Columns of a metrics.csv row that are not loss terms (they get their own place in the line).
_NOT_TERMS = {"epoch", "step", "lr", "epoch_time_s", "images_per_s", "skipped_steps", "gpu_mem_peak_gb"}
# MI estimators shown in the epoch line (all are in mi.csv): the embedding pair's estimate and MI gap.
_SHOWN_REPRESENTATION = "embedding"


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"3:07"`` (m:ss) or ``"1:02:07"`` (h:mm:ss)."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_number(value: float) -> str:
    return f"{value:.4g}"


def format_mi(rows: list[dict[str, Any]]) -> str:
    """``"MI InfoNCE 2.31 (gap 1.9), JSD ..."`` from the MI monitor's rows of one estimate (embedding pair)."""
    shown = [r for r in rows if r.get("representation") == _SHOWN_REPRESENTATION] or rows
    if not shown:
        return ""
    return "MI " + ", ".join(f"{r['estimator']} {format_number(float(r['value']))} "
                             f"(gap {format_number(float(r['gap']))})" for r in shown)


def format_eval(results: dict[str, dict[str, float]]) -> str:
    """``"SimCLR linear 81.20% kNN 79.00%"`` per encoder, joined by ``"; "``."""
    return "; ".join(f"{label} linear {100 * m['linear']:.2f}% kNN {100 * m['knn']:.2f}%"
                     for label, m in results.items() if "linear" in m and "knn" in m)


def format_epoch_line(seed: int, epoch: int, epochs: int, row: dict[str, Any], eta_s: float | None,
                      mi_rows: list[dict[str, Any]] | None = None,
                      evaluation: dict[str, dict[str, float]] | None = None) -> str:
    """One line per epoch: loss terms, lr, images/s, epoch time, ETA; collapse and MI values when measured;
    accuracy when evaluated. ``row`` is the epoch's metrics.csv row."""
    terms = {k: v for k, v in row.items() if k not in _NOT_TERMS and not k.startswith("emb_")}
    parts = [f"seed {seed} epoch {epoch}/{epochs}:",
             " ".join(f"{k} {format_number(float(v))}" for k, v in terms.items())]
    parts.append(f"| lr {row['lr']:.3g} | {row['images_per_s']:.0f} img/s | {format_duration(row['epoch_time_s'])}")
    if "gpu_mem_peak_gb" in row:
        parts.append(f"| peak {float(row['gpu_mem_peak_gb']):.2f} GiB")
    if eta_s is not None:
        parts.append(f"| ETA {format_duration(eta_s)}")
    if row.get("skipped_steps"):
        parts.append(f"| skipped {row['skipped_steps']} non-finite steps")
    collapse = [f"{k} {format_number(float(v))}" for k, v in row.items() if k.startswith("emb_std_")]
    if collapse:
        parts.append("| " + " ".join(collapse))
    if mi_rows:
        parts.append("| " + format_mi(mi_rows))
    if evaluation:
        parts.append("| " + format_eval(evaluation))
    return " ".join(p for p in parts if p)


def eta_seconds(epoch_times: list[float], remaining_epochs: int) -> float | None:
    """Remaining epochs times the mean wall time of the epochs run so far in this invocation."""
    if not epoch_times or remaining_epochs <= 0:
        return None if not epoch_times else 0.0
    return remaining_epochs * sum(epoch_times) / len(epoch_times)


class ConsoleLog:
    """The run's printed lines (rank 0 only; ``enabled=False`` silences it, e.g. for the demo's inner runs)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None):
        self.enabled = enabled
        self.stream = stream

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream or sys.stdout, flush=True)

    def epoch(self, seed: int, epoch: int, epochs: int, row: dict[str, Any], eta_s: float | None,
              mi_rows: list[dict[str, Any]] | None = None,
              evaluation: dict[str, dict[str, float]] | None = None) -> None:
        self.line(format_epoch_line(seed, epoch, epochs, row, eta_s, mi_rows, evaluation))

    def phase(self, seed: int, text: str) -> None:
        self.line(f"seed {seed}: {text}")

    def summary(self, seed: int, final: dict[str, dict[str, float]], random_init: dict[str, dict[str, float]],
                elapsed_s: float) -> None:
        """One line per encoder at the end: final accuracies and the difference to random init."""
        base = next(iter(random_init.values()), None)
        if not final:
            self.phase(seed, f"done in {format_duration(elapsed_s)} (no labels: no linear probe or kNN)")
            return
        for label, m in final.items():
            vs = ""
            if base is not None:
                vs = (f" (random init {100 * base['linear']:.2f}% / {100 * base['knn']:.2f}%: "
                      f"{100 * (m['linear'] - base['linear']):+.2f} / {100 * (m['knn'] - base['knn']):+.2f} points)")
            self.phase(seed, f"final {label}: linear {100 * m['linear']:.2f}%, kNN {100 * m['knn']:.2f}%{vs}")
        self.phase(seed, f"done in {format_duration(elapsed_s)}")

