"""The estimator x task table of docs/monitoring.md: mimax.estimate_mi (InfoNCE, NWJ, SMILE; separable critic,
defaults) on tasks with closed-form MI (mimax.experiments.mi_tasks: Gaussians with sparse and dense
interactions, Student-t, monotone transforms, wide embeddings), several independent samples per task.

Per estimator and task: the true MI, the mean estimate, the bias (mean - truth), its spread over samples, the
coverage of the 95% interval (share of samples whose interval holds the truth), the share within the
tolerance 0.1 nat + 10%, the ceiling log N, and the mean CPU time of one estimate (one thread).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/mi_estimators.py [--pairs 4000] [--repeats 5] [--out FILE.md]
[--shard K/M] [--bounds infonce ...] [--tasks SUBSTRING ...] [--demo_critic] [--critic_options JSON]``

``--demo_critic`` estimates with ``mimax demo``'s critic (:data:`mimax.experiments.gaussian.DEMO_CRITIC`)
instead of the defaults; ``--critic_options`` overrides single options (e.g. ``'{"max_steps": 200}'``).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
from common import positive_int  # noqa: E402

from mimax.experiments.gaussian import DEMO_CRITIC  # noqa: E402
from mimax.experiments.mi_tasks import MITask, canonical_cov, standard_tasks  # noqa: E402
from mimax.monitors.estimators import BOUND_NAMES, estimate_mi  # noqa: E402


def tasks(pairs: int) -> list[tuple[MITask, int]]:
    out = [(t, pairs) for t in standard_tasks()]
    out += [(MITask("gauss 64x64 sparse 4x rho=0.8 (wide)", canonical_cov(64, 64, [0.8] * 4), 64), 2048),
            (MITask("gauss 128x128 rho=0.9..0.2 (wide)", canonical_cov(128, 128, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4,
                                                                               0.3, 0.2]), 128), 2048)]
    # no dependence at all: a held-out bound of a validated critic should read about 0 (an overfitted
    # critic used to read -3 nats on the wide one)
    out += [(MITask("independent 4x4", canonical_cov(4, 4, []), 4), pairs),
            (MITask("independent 128x128 (wide)", canonical_cov(128, 128, []), 128), 512)]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=positive_int, default=4000)
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--out", default=None)
    p.add_argument("--shard", default="0/1", help="K/M: only the tasks whose index is K modulo M (to run M "
                   "processes side by side and concatenate their rows)")
    p.add_argument("--bounds", nargs="+", default=list(BOUND_NAMES), choices=BOUND_NAMES)
    p.add_argument("--tasks", nargs="+", default=None, help="only tasks whose name contains one of these")
    p.add_argument("--demo_critic", action="store_true", help="mimax demo's critic options instead of the defaults")
    p.add_argument("--critic_options", default="{}", help="JSON object of estimate_mi options to override")
    args = p.parse_args()
    shard = re.fullmatch(r"(\d+)/(\d+)", args.shard)
    if not shard or int(shard[2]) < 1 or int(shard[1]) >= int(shard[2]):
        p.error(f"--shard: expected K/M with 0 <= K < M, got {args.shard!r}")
    k, m = int(shard[1]), int(shard[2])
    try:
        options = {**(DEMO_CRITIC if args.demo_critic else {}), **json.loads(args.critic_options)}
    except (ValueError, TypeError):
        p.error(f"--critic_options: expected a JSON object, got {args.critic_options!r}")
    selected = [(t, n) for t, n in tasks(args.pairs) if args.tasks is None or any(w in t.name for w in args.tasks)]
    if not selected:  # an empty table would read as a finished benchmark
        p.error(f"--tasks: {' '.join(map(repr, args.tasks))} match no task; tasks: "
                f"{', '.join(t.name for t, _ in tasks(args.pairs))}")
    torch.set_num_threads(1)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    head = [f"machine: {cpu}, 1 thread; load before: {open('/proc/loadavg').read().split()[:3]}",
            f"python {platform.python_version()}, torch {torch.__version__}; {args.repeats} samples per task; "
            f"critic options {options or 'defaults'}",
            "", "| task | N | true MI | estimator | mean estimate | bias | sd | 95% CI coverage | within 0.1+10% "
            "| log N | CPU time / estimate (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(head), flush=True)
    lines = list(head)
    for task, n in selected[k::m]:
        for bound in args.bounds:
            ests, covered, ok, secs = [], 0, 0, []
            for r in range(args.repeats):
                x, y = task.sample(n, seed=1000 + r)
                t0 = time.process_time()  # CPU seconds of this process: other jobs on the machine do not enter
                e = estimate_mi(x, y, bound=bound, seed=r, **options)
                secs.append(time.process_time() - t0)
                ests.append(e.mi)
                covered += e.ci[0] <= task.mi <= e.ci[1]
                ok += abs(e.mi - task.mi) <= 0.1 + 0.1 * task.mi
                if bound == "infonce":
                    assert e.mi <= e.log_n + 1e-9, "InfoNCE above log N"
            mean = statistics.fmean(ests)
            sd = statistics.stdev(ests) if len(ests) > 1 else 0.0
            line = (f"| {task.name} | {n} | {task.mi:.3f} | {bound} | {mean:.3f} | {mean - task.mi:+.3f} | {sd:.3f} "
                    f"| {covered}/{args.repeats} | {ok}/{args.repeats} | {e.log_n:.2f} "
                    f"| {statistics.fmean(secs):.2f} |")
            print(line, flush=True)
            lines.append(line)
    tail = f"load after: {open('/proc/loadavg').read().split()[:3]}"
    print(tail)
    lines.append(tail)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
