"""Forward + backward time of the critic-based objectives, mimax's formulation against the textbook one, on
one thread, measured interleaved in one process (rounds alternate the two; medians over rounds).

Textbook formulation (what mimax computed before): ``S = normalize(u) @ normalize(v).T / tau``; the DV
marginal as ``logsumexp`` over the gathered off-diagonal entries; InfoNCE as ``logsumexp`` per row and the
diagonal; NT-Xent with an eye mask (``masked_fill``). mimax's (docs/performance.md, "The objectives"):
1/tau on the (N, D) side, :func:`mimax.bounds.pair_products`' operand layouts for narrow embeddings on the
CPU, the DV marginal's own backward, InfoNCE as a cross-entropy, the NT-Xent diagonal filled in place.
Also the pair product alone, plain ``a @ b.T`` against the transposed layouts, over embedding widths (the
width up to which :data:`mimax.bounds.NARROW_PAIR_WIDTH` lays them out).

    python benchmarks/objectives.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from common import machine_info

from mimax.bounds import NARROW_PAIR_WIDTH
from mimax.objectives import dv_objective, moco_v3_loss, nt_xent_loss


def textbook_scores(u, v, tau):
    return F.normalize(u, dim=1) @ F.normalize(v, dim=1).T / tau


def textbook_dv(u, v, tau):
    s = textbook_scores(u, v, tau)
    n = s.shape[0]
    marginal = torch.logsumexp(s.flatten()[1:].view(n - 1, n + 1)[:, :-1].flatten(), 0) - math.log(n * (n - 1))
    return -(s.diagonal().mean() - marginal)


def textbook_moco(q, k, tau):
    s = textbook_scores(q, k, tau)
    n = s.shape[0]
    return 2 * tau * (math.log(n) - (math.log(n) + (s.diagonal() - torch.logsumexp(s, 1)).mean()))


def textbook_nt_xent(u, v, tau):
    n = u.shape[0]
    z = F.normalize(torch.cat([u, v]), dim=1)
    logits = (z @ z.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


def per_call_us(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def interleaved(a, b, rounds: int, calls: int) -> tuple[float, float]:
    for _ in range(max(3, calls // 10)):
        a(), b()
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(per_call_us(a, calls))
        tb.append(per_call_us(b, calls))
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_info())
    tau = 0.2
    print("\nobjective forward + backward, mimax vs textbook (us per call, fp32):")
    print(f"{'objective':10s} {'N':>5s} {'D':>4s} {'textbook':>10s} {'mimax':>10s} {'mimax/textbook':>15s}")
    cases = [("DV", lambda u, v: dv_objective(u, v, tau)["loss"], textbook_dv),
             ("MoCo-v3", lambda u, v: moco_v3_loss(u, v, tau)["loss"], textbook_moco),
             ("NT-Xent", lambda u, v: nt_xent_loss(u, v, tau)["loss"], textbook_nt_xent)]
    for name, ours, textbook in cases:
        for n, d in ((256, 3), (256, 64), (1024, 128)):
            gen = torch.Generator().manual_seed(n + d)
            u = torch.randn(n, d, generator=gen, requires_grad=True)
            v = (torch.randn(n, d, generator=gen) + u.detach()).requires_grad_()
            calls = max(3, int(2e7 / (n * n * (4 if name == "NT-Xent" else 1) * max(d, 16) / 8)))
            t_text, t_ours = interleaved(lambda t=textbook, u=u, v=v: t(u, v, tau).backward(),
                                         lambda o=ours, u=u, v=v: o(u, v).backward(),
                                         args.rounds, min(calls, 400))
            print(f"{name:10s} {n:5d} {d:4d} {t_text:10.1f} {t_ours:10.1f} {t_ours / t_text:15.2f}")
    print(f"\npair product a @ b.T forward + backward (N x N), plain vs transposed operand layouts (us per call); "
          f"mimax lays out widths <= {NARROW_PAIR_WIDTH} on the CPU:")
    print(f"{'N':>5s} {'D':>5s} {'plain':>10s} {'layout':>10s} {'layout/plain':>13s}")
    for n in (256, 512):
        for d in (2, 3, 8, 16, 64, 128):
            gen = torch.Generator().manual_seed(n * d)
            a = torch.randn(n, d, generator=gen, requires_grad=True)
            b = torch.randn(n, d, generator=gen, requires_grad=True)
            g = torch.randn(n, n, generator=gen)
            calls = min(400, max(3, int(1e7 / (n * n * max(d, 16) / 8))))
            t_plain, t_lay = interleaved(lambda a=a, b=b, g=g: (a @ b.T).backward(g),
                                         lambda a=a, b=b, g=g: (a.T.contiguous().T @ b.T.contiguous()).backward(g),
                                         args.rounds, calls)
            print(f"{n:5d} {d:5d} {t_plain:10.1f} {t_lay:10.1f} {t_lay / t_plain:13.2f}")


if __name__ == "__main__":
    main()
