"""Learning-rate schedule and LARS."""

from __future__ import annotations

import math

import pytest
import torch

from mimax.engine.optim import LARS, build_optimizer, lr_factor, set_learning_rates
from mimax.paradigms.base import param_groups


def test_schedule_warmup_mid_and_end():
    total, warm = 1000, 100
    assert lr_factor(0, total, warm) == pytest.approx(1 / 100)
    assert lr_factor(49, total, warm) == pytest.approx(0.5)
    assert lr_factor(99, total, warm) == pytest.approx(1.0)  # end of warmup reaches the base LR
    assert lr_factor(100, total, warm) == pytest.approx(1.0)  # cosine starts at 1
    assert lr_factor(550, total, warm) == pytest.approx(0.5)  # halfway through the cosine
    assert lr_factor(775, total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_factor(999, total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi * 899 / 900)))
    assert lr_factor(1000, total, warm) == pytest.approx(0.0, abs=1e-12)
    factors = [lr_factor(s, total, warm) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))  # monotone decay


def test_schedule_without_warmup_starts_at_base():
    assert lr_factor(0, 10, 0) == 1.0


def test_fixed_lr_groups_keep_their_base_lr():
    a, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2, 2))
    opt = build_optimizer("sgd", [{"params": [a]}, {"params": [b], "fixed_lr": True}], lr=0.1,
                          weight_decay=0.0, momentum=0.9)
    set_learning_rates(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.025), pytest.approx(0.1)]


def test_lars_trust_ratio_math():
    w0 = torch.tensor([[3.0, 4.0]])  # ||w|| = 5
    g0 = torch.tensor([[0.6, 0.8]])
    p = torch.nn.Parameter(w0.clone())
    p.grad = g0.clone()
    lr, wd, eta, mom = 0.1, 0.01, 0.02, 0.9
    opt = LARS([{"params": [p], "exclude_from_lars": False}], lr=lr, momentum=mom, weight_decay=wd, eta=eta)
    opt.step()
    g = g0 + wd * w0
    trust = eta * w0.norm() / g.norm()
    expected = w0 - lr * trust * g
    assert torch.allclose(p.data, expected, atol=1e-7)
    # second step: momentum buffer accumulates the scaled update
    w1 = p.data.clone()
    p.grad = g0.clone()
    opt.step()
    g1 = g0 + wd * w1
    buf = mom * (trust * g) + eta * w1.norm() / g1.norm() * g1
    assert torch.allclose(p.data, w1 - lr * buf, atol=1e-7)


def test_lars_excluded_groups_get_plain_sgd_without_decay():
    p = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    p.grad = torch.tensor([0.5, 0.5])
    opt = LARS([{"params": [p], "exclude_from_lars": True}], lr=0.1, momentum=0.9, weight_decay=0.5, eta=0.02)
    opt.step()
    assert torch.allclose(p.data, torch.tensor([2.0 - 0.05, -1.0 - 0.05]))


def test_param_groups_put_biases_and_norms_in_the_excluded_group():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    groups = param_groups(net)
    weights, others = groups
    assert not weights["exclude_from_lars"] and others["exclude_from_lars"]
    assert all(p.ndim == 2 for p in weights["params"]) and len(weights["params"]) == 2
    assert all(p.ndim == 1 for p in others["params"]) and len(others["params"]) == 4


def _lars_loop(params, grads_per_step, lr, mom, wd, eta):
    """Reference: LARS written parameter by parameter, straight from the update rule."""
    w = [p.clone() for p in params]
    bufs = [None] * len(w)
    for grads in grads_per_step:
        for i, g0 in enumerate(grads):
            g = g0 + wd * w[i]
            wn, gn = w[i].norm(), g.norm()
            g = g * (eta * wn / gn if wn > 0 and gn > 0 else 1.0)
            bufs[i] = g.clone() if bufs[i] is None else mom * bufs[i] + g
            w[i] = w[i] - lr * bufs[i]
    return w


def test_lars_over_many_parameters_matches_the_per_parameter_rule():
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 3, 3, 3), (16,), (5, 7), (4,)]
    start = [torch.randn(s, generator=gen) for s in shapes]
    start[1].zero_()  # a zero weight: trust ratio 1
    steps = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(3)]
    params = [torch.nn.Parameter(w.clone()) for w in start]
    opt = LARS([{"params": params, "exclude_from_lars": False}], lr=0.3, momentum=0.9, weight_decay=1e-2, eta=0.02)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))  # gradients are left as they were
    for p, ref in zip(params, _lars_loop(start, steps, 0.3, 0.9, 1e-2, 0.02)):
        torch.testing.assert_close(p.data, ref, atol=1e-6, rtol=1e-6)


def test_fractional_warmup_epochs_warm_up_over_that_share_of_the_steps(tmp_path):
    """``--warmup_epochs 0.5`` of 8-step epochs warms up over 4 steps: the LR of the epoch's last step
    (metrics.csv) is already on the cosine, where 1 warmup epoch would still be at the base LR."""
    import csv
    import json

    from conftest import TINY_GAUSSIAN, run_cli

    res = run_cli(["train", *TINY_GAUSSIAN, "--epochs", "2", "--warmup_epochs", "0.5", "--initial_lr", "0.01",
                   "--mi_interval", "0", "--output_dir", str(tmp_path / "r")])
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(tmp_path / "r" / "seed_0" / "metrics.csv")))
    steps = int(rows[0]["step"])  # 512 points / batch 64 = 8 steps per epoch
    assert steps == 8
    expected = 0.01 * 0.5 * (1 + math.cos(math.pi * (steps - 1 - 4) / (2 * steps - 4)))
    assert float(rows[0]["lr"]) == pytest.approx(expected, rel=1e-6)
    # a fractional warmup resumes (the saved value reads back to the run's identity), and so does a whole one
    # given as a float flag, which must match the preset's int
    for warmup in ("0.5", "1.0"):
        part = tmp_path / f"part{warmup}"
        assert run_cli(["train", *TINY_GAUSSIAN, "--epochs", "2", "--warmup_epochs", warmup, "--mi_interval", "0",
                        "--stop_after", "1", "--output_dir", str(part)]).returncode == 0
        resumed = run_cli(["train", "--resume", str(part)])
        assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "part1.0" / "config.json").read_text())["warmup_epochs"] == 1
    bad = run_cli(["train", *TINY_GAUSSIAN, "--epochs", "2", "--warmup_epochs", "2.5",
                   "--output_dir", str(tmp_path / "bad")])
    assert bad.returncode == 2 and "--warmup_epochs" in bad.stderr and not (tmp_path / "bad").exists()


def _adam_loop(w: torch.Tensor, grads: list[torch.Tensor], lr: float, wd: float, decoupled: bool,
               betas=(0.9, 0.999), eps=1e-8) -> torch.Tensor:
    """Reference: Adam (Kingma & Ba, 2015, Alg. 1) and AdamW (Loshchilov & Hutter, 2019), element by element
    in float64, straight from the update rule."""
    w = w.double().clone()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g.double()
        if decoupled:
            w = w * (1 - lr * wd)
        else:
            g = g + wd * w
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        w = w - lr * m_hat / (v_hat.sqrt() + eps)
    return w


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_cpu_optimizers_use_the_fused_kernels_and_follow_the_update_rule(name):
    torch.manual_seed(0)
    w0 = torch.randn(5, 4)
    grads = [torch.randn(5, 4) for _ in range(20)]
    p = torch.nn.Parameter(w0.clone())
    opt = build_optimizer(name, [{"params": [p]}], lr=0.01, weight_decay=0.1, momentum=0.9)
    assert opt.param_groups[0]["fused"] is True
    for g in grads:
        p.grad = g.clone()
        opt.step()
    if name == "sgd":  # buf <- mu buf + (g + wd w) (buf = g + wd w at the first step); w <- w - lr buf
        w, buf = w0.double(), None
        for g in grads:
            d = g.double() + 0.1 * w
            buf = d if buf is None else 0.9 * buf + d
            w = w - 0.01 * buf
    else:
        w = _adam_loop(w0, grads, lr=0.01, wd=0.1, decoupled=name == "adamw")
    assert torch.allclose(p.data.double(), w, atol=1e-6, rtol=1e-5)


def test_a_checkpoint_of_unfused_kernels_resumes_on_them():
    """Runs saved before the fused kernels resume with the kernels they trained with: the optimizer state
    carries its group options, and the fused and per-parameter kernels round differently in the last bit."""
    p = torch.nn.Parameter(torch.ones(3))
    old = torch.optim.Adam([{"params": [p], "base_lr": 0.1, "fixed_lr": False}], lr=0.1)
    p.grad = torch.ones(3)
    old.step()
    new = build_optimizer("adam", [{"params": [p]}], lr=0.1, weight_decay=0.0, momentum=0.9)
    assert new.param_groups[0]["fused"] is True
    new.load_state_dict(old.state_dict())
    assert not new.param_groups[0]["fused"]
    saved = build_optimizer("adam", [{"params": [p]}], lr=0.1, weight_decay=0.0, momentum=0.9).state_dict()
    again = build_optimizer("adam", [{"params": [p]}], lr=0.1, weight_decay=0.0, momentum=0.9)
    again.load_state_dict(saved)
    assert again.param_groups[0]["fused"] is True


def test_channels_last_parameters_keep_the_per_parameter_kernels():
    """torch's fused CPU kernels update the wrong elements when a channels-last parameter gets a
    standard-layout gradient (and corrupted the heap of a `--channels_last` run): such parameters are
    stepped by the per-parameter kernels, whose update matches the same optimizer on contiguous copies."""
    torch.manual_seed(0)
    w0 = torch.randn(8, 4, 3, 3)
    grads = [torch.randn(8, 4, 3, 3) for _ in range(5)]  # standard layout, as autograd may produce
    for name in ("adam", "sgd"):
        cl = torch.nn.Parameter(w0.clone().contiguous(memory_format=torch.channels_last))
        ref = torch.nn.Parameter(w0.clone())
        opt = build_optimizer(name, [{"params": [cl]}], lr=0.1, weight_decay=0.0, momentum=0.9)
        ref_opt = build_optimizer(name, [{"params": [ref]}], lr=0.1, weight_decay=0.0, momentum=0.9)
        assert not opt.param_groups[0].get("fused") and ref_opt.param_groups[0]["fused"] is True
        for g in grads:
            cl.grad, ref.grad = g.clone(), g.clone()
            opt.step()
            ref_opt.step()
        assert torch.allclose(cl.data, ref.data, atol=1e-6), name
