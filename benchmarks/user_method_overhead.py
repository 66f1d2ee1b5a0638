"""Step time of a user-defined method (``--model_name file.py:Class``) ÷ the same method built in.

The user method is a copy of a built-in method's declaration in a file outside the package (SimCLR:
joint; BYOL: self-distillation with an EMA target and a predictor). Both are trained through the
engine (``mimax train`` in this process), interleaved round by round in alternating order; the time is
``metrics.csv``'s ``epoch_time_s`` (the step loop only: no evaluation, no checkpointing), summed over
the epochs of a run. Reported: the median over rounds of user ÷ built-in (1.00 = no overhead).

    PYTHONPATH=src python benchmarks/user_method_overhead.py --rounds 5 --epochs 3
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import machine_info

COPIES = {
    "SimCLR": '''from mimax import JointMethod
from mimax.objectives import nt_xent_loss


class UserSimCLR(JointMethod):
    def objective(self, z_a, z_b):
        return nt_xent_loss(z_a, z_b, self.cfg.temperature)
''',
    "BYOL": '''from mimax import SelfDistillationMethod
from mimax.methods.byol import BYOL
from mimax.objectives import byol_loss


class UserBYOL(SelfDistillationMethod):
    target_update = "ema"
    has_predictor = True
    reduction = "sum"
    preset = BYOL.preset

    def objective(self, p, z):
        return byol_loss(p, z)
''',
}


def epoch_seconds(run_dir: Path) -> float:
    with open(run_dir / "seed_0" / "metrics.csv", newline="") as fh:
        return sum(float(r["epoch_time_s"]) for r in csv.DictReader(fh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train_size", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from mimax.cli import main as mimax

    print(machine_info())
    tmp = Path(tempfile.mkdtemp(prefix="mimax_user_overhead_"))
    common = ["--dataset", "Gaussian", "--gm_train_size", str(args.train_size), "--epochs", str(args.epochs),
              "--mi_interval", "0", "--num_threads", str(args.threads), "--model_evaluation_interval", "1000"]
    for builtin, code in COPIES.items():
        (tmp / f"user_{builtin}.py").write_text(code)
        user = f"{tmp / f'user_{builtin}.py'}:User{builtin}"
        ratios, times = [], {"builtin": [], "user": []}
        for r in range(args.rounds + 1):  # round 0 warms up (imports, allocator) and is not counted
            order = [("builtin", builtin), ("user", user)]
            if r % 2:
                order.reverse()
            seconds = {}
            for kind, name in order:
                out = tmp / f"{builtin}_{kind}_{r}"
                with contextlib.redirect_stdout(io.StringIO()):
                    assert mimax(["train", *common, "--model_name", name, "--output_dir", str(out)]) == 0
                seconds[kind] = epoch_seconds(out)
            if r:
                ratios.append(seconds["user"] / seconds["builtin"])
                for kind in seconds:
                    times[kind].append(seconds[kind])
        print(f"{builtin}: built-in {statistics.median(times['builtin']):.3f} s, "
              f"user {statistics.median(times['user']):.3f} s "
              f"per {args.epochs} epochs (median of {args.rounds}); user / built-in: median "
              f"{statistics.median(ratios):.3f}, per round {', '.join(f'{x:.3f}' for x in ratios)}")
    print(f"finished {time.strftime('%H:%M:%S')}; run directories in {tmp}")


if __name__ == "__main__":
    main()
