"""The self-distillation paradigm: gradient flow, no-grad side, EMA math, SimSiam's copy, alternation."""

from __future__ import annotations

import math

import pytest
import torch

from mimax.config import ConfigError, config_from_args
from mimax.config.presets import DATASET_PRESETS, method_preset
from mimax.engine.optim import build_optimizer
from mimax.methods import METHODS, build_method
from mimax.objectives import simsiam_loss
from mimax.paradigms.self_distillation import ema_base, ema_momentum, ema_time_constants

TINY = ["--dataset", "Gaussian", "--gm_train_size", "256", "--gm_test_size", "64", "--gm_monitor_size", "64",
        "--batch_size", "32"]


def make(name, *flags):
    cfg = config_from_args(["--model_name", name, *TINY, *flags])
    torch.manual_seed(0)
    return build_method(cfg, (cfg.gm_dim,)), cfg


def views(n=32, d=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x + 0.5 * torch.randn(n, d, generator=g), x + 0.5 * torch.randn(n, d, generator=g)


def grads(module):
    return [p.grad for p in module.parameters()]


@pytest.mark.parametrize("flags", [[], ["--predictor"]])
def test_sdmi_theta_step_leaves_xi_grads_none_and_vice_versa(flags):
    method, _ = make("SDMI", *flags)
    x_a, x_b = views()
    assert method.active_optimizer(0) == "online" and method.active_optimizer(1) == "target"
    method.training_loss(x_a, x_b, step=0)["loss"].backward()
    assert all(g is None for g in grads(method.target))
    assert all(g is not None for g in grads(method.online))
    if method.predictor is not None:
        assert all(g is not None for g in grads(method.predictor))
    method.zero_grad(set_to_none=True)
    method.training_loss(x_a, x_b, step=1)["loss"].backward()
    assert all(g is None for g in grads(method.online))
    if method.predictor is not None:
        assert all(g is None for g in grads(method.predictor))
    assert all(g is not None for g in grads(method.target))


def _record_grad_mode(module, log):
    return module.register_forward_hook(lambda m, i, o: log.append((torch.is_grad_enabled(), o.requires_grad)))


@pytest.mark.parametrize("name,flags", [("SDMI", []), ("SDMI", ["--predictor"]), ("BYOL", []), ("MoCoV3", [])])
def test_the_side_not_updated_runs_without_autograd(name, flags):
    method, _ = make(name, *flags)
    x_a, x_b = views()
    online_log, target_log = [], []
    h1, h2 = _record_grad_mode(method.online, online_log), _record_grad_mode(method.target, target_log)
    method.training_loss(x_a, x_b, step=0)
    assert online_log == [(True, True)] * 2 and target_log == [(False, False)] * 2
    if method.rule == "alternate":
        online_log.clear(), target_log.clear()
        method.training_loss(x_a, x_b, step=1)
        assert online_log == [(False, False)] * 2 and target_log == [(True, True)] * 2
    h1.remove(), h2.remove()


def test_simsiam_target_is_the_online_output_detached():
    method, _ = make("SimSiam")
    assert method.target is None and method.target_encoder is method.online
    x_a, x_b = views()
    calls = []
    hook = method.online.register_forward_hook(lambda m, i, o: calls.append(1))
    loss = method.training_loss(x_a, x_b, step=0)["loss"]
    hook.remove()
    assert len(calls) == 2  # one forward per view, no extra target forward
    loss.backward()
    got = [p.grad.clone() for p in method.parameters()]
    method.zero_grad(set_to_none=True)

    def reference(detach):
        z_a, z_b = method.online(x_a), method.online(x_b)
        t_a, t_b = (z_a.detach(), z_b.detach()) if detach else (z_a, z_b)
        p_a, p_b = method.predictor(z_a), method.predictor(z_b)
        return (simsiam_loss(p_a, t_b)["loss"] + simsiam_loss(p_b, t_a)["loss"]) / 2

    ref = reference(detach=True)
    assert ref.item() == pytest.approx(loss.item(), rel=1e-6)
    ref.backward()
    assert all(torch.allclose(g, p.grad, atol=1e-7) for g, p in zip(got, method.parameters()))
    method.zero_grad(set_to_none=True)
    reference(detach=False).backward()  # without the stop-gradient the gradient differs
    assert not all(torch.allclose(g, p.grad, atol=1e-7) for g, p in zip(got, method.parameters()))


def test_ema_update_matches_hand_computation():
    method, cfg = make("BYOL")
    assert cfg.ema_momentum == 0.9
    with torch.no_grad():
        for p in method.target.parameters():
            p.add_(torch.randn_like(p))
    theta = [p.detach().clone() for p in method.online.parameters()]
    xi = [p.detach().clone() for p in method.target.parameters()]
    step, total = 3, 10
    m = 1 - (1 - 0.9) * (math.cos(math.pi * step / total) + 1) / 2
    method.after_step(step, total)
    for t, s, new in zip(xi, theta, method.target.parameters()):
        torch.testing.assert_close(new, m * t + (1 - m) * s, rtol=1e-6, atol=1e-7)
    assert ema_momentum(0, 10, 0.9) == pytest.approx(0.9) and ema_momentum(10, 10, 0.9) == pytest.approx(1.0)


@pytest.mark.parametrize("base,total", [(0.99, 1), (0.99, 7), (0.9, 1000), (0.996, 2345), (0.5, 64)])
def test_ema_schedule_against_its_closed_forms(base, total):
    """m_k = 1 - (1 - m_0)(cos(pi k/K) + 1)/2 per step, and the time constants spanned over the run,
    sum_k (1 - m_k) = (1 - m_0)(K + 1)/2, against a loop; the initial target's weight left is prod_k m_k."""
    ks = range(total)
    m = [1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2 for k in ks]
    assert [ema_momentum(k, total, base) for k in ks] == pytest.approx(m, abs=1e-15)
    assert ema_momentum(total, total, base) == pytest.approx(1.0)
    assert ema_time_constants(base, total) == pytest.approx(sum(1 - mk for mk in m), rel=1e-12)
    assert math.prod(m) <= math.exp(-ema_time_constants(base, total)) + 1e-12  # log m <= m - 1


@pytest.mark.parametrize("base,total,n_min,expected", [
    (0.99, 195_000, 50, 0.99),  # a long run keeps m_0: it spans ~975 time constants
    (0.99, 9_999, 50, 0.99),  # (1 - 0.99)(9,999 + 1)/2 = 50 exactly: kept
    (0.99, 999, 50, 0.9),  # 1 - 2 * 50 / 1,000
    (0.99, 1_999, 50, 0.95),  # 1 - 2 * 50 / 2,000
    (0.99, 234, 50, 0.9),  # 1 - 100/235 < 0.9: the floor
    (0.996, 5_999, 20, 1 - 40 / 6000),
    (0.5, 100, 50, 0.5),  # never raised above the given m_0
    (0.99, 234, 0, 0.99),  # 0: the given m_0, whatever the run
])
def test_short_run_rule_values(base, total, n_min, expected):
    got = ema_base(base, total, n_min)
    assert got == pytest.approx(expected, abs=1e-12)
    if expected not in (base, 0.9):  # lowered, not floored: the run spans exactly n_min time constants
        assert ema_time_constants(got, total) == pytest.approx(n_min)


# Training images of the datasets whose presets are the published long recipes (CIFAR train: 50,000;
# Tiny-ImageNet: 100,000; ImageNet-100: 126,689).
LONG_RUNS = {"CIFAR10": 50_000, "CIFAR100": 50_000, "TinyImageNet": 100_000, "ImageNet100": 126_689}


@pytest.mark.parametrize("dataset", sorted(LONG_RUNS))
@pytest.mark.parametrize("name", ["BYOL", "MoCoV3", "SDMI"])
def test_long_presets_keep_the_published_momentum(dataset, name):
    preset = {**DATASET_PRESETS[dataset], **method_preset(METHODS[name], dataset)}
    assert preset["ema_momentum"] == 0.99  # solo-learn's CIFAR/ImageNet-100 configs (scripts/README.md)
    total = preset["epochs"] * math.ceil(LONG_RUNS[dataset] / preset.get("batch_size", 256))
    assert ema_base(preset["ema_momentum"], total, preset["ema_min_time_constants"]) == 0.99  # exactly


def test_ema_update_uses_the_short_run_momentum_and_says_so():
    """A 10-step BYOL run with m_0 = 0.99 spans 0.055 time constants: the rule lowers m_0 to the floor 0.9,
    and the target moves by that schedule; ``--ema_min_time_constants 0`` keeps 0.99."""
    for flags, base in ((["--ema_momentum", "0.99"], 0.9),
                        (["--ema_momentum", "0.99", "--ema_min_time_constants", "0"], 0.99)):
        method, _ = make("BYOL", *flags)
        with torch.no_grad():
            for p in method.target.parameters():
                p.add_(torch.randn_like(p))
        theta = [p.detach().clone() for p in method.online.parameters()]
        xi = [p.detach().clone() for p in method.target.parameters()]
        m = 1 - (1 - base) * (math.cos(math.pi * 4 / 10) + 1) / 2
        method.after_step(4, 10)
        for t, s, new in zip(xi, theta, method.target.parameters()):
            torch.testing.assert_close(new, m * t + (1 - m) * s, rtol=1e-6, atol=1e-7)
        note = method.notes(10)[0]
        assert f"m_0 = {base:g}" in note and (("lowered" in note) == (base != 0.99)), note
    assert make("SimSiam")[0].notes(10) == [] and make("SDMI")[0].notes(10) == []


def test_ema_target_starts_as_a_copy_and_has_no_optimizer():
    method, _ = make("MoCoV3")
    for a, b in zip(method.online.parameters(), method.target.parameters()):
        assert torch.equal(a, b) and not b.requires_grad
    groups = method.optimizer_groups()
    assert list(groups) == ["online"]
    target_ids = {id(p) for p in method.target.parameters()}
    assert not target_ids & {id(p) for g in groups["online"] for p in g["params"]}


def test_sdmi_target_init_independent_by_default_and_copy_as_option():
    independent, _ = make("SDMI")
    assert not all(torch.equal(a, b) for a, b in zip(independent.online.parameters(),
                                                      independent.target.parameters()))
    copied, _ = make("SDMI", "--target_init", "copy")
    assert all(torch.equal(a, b) for a, b in zip(copied.online.parameters(), copied.target.parameters()))


def test_sdmi_projector_bn_centers_both_encoders_embeddings_over_the_batch():
    plain, _ = make("SDMI")
    centered, _ = make("SDMI", "--projector_bn")
    x_a, _ = views(n=64)
    for method, bn in ((plain, False), (centered, True)):
        for encoder in (method.online, method.target):
            assert isinstance(encoder.projector[-1], torch.nn.BatchNorm1d) == bn
            mean = encoder.train()(x_a).mean(0)  # per embedding dimension, over the batch
            if bn:  # BatchNorm's affine bias starts at 0: every dimension centered
                torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
            else:
                assert mean.abs().max() > 1e-2


def test_simsiam_predictor_has_a_fixed_learning_rate():
    method, _ = make("SimSiam")
    groups = method.optimizer_groups()["online"]
    pred = {id(p) for p in method.predictor.parameters()}
    for g in groups:
        assert g.get("fixed_lr", False) == (id(g["params"][0]) in pred)
    opt = build_optimizer("sgd", groups, lr=0.1, weight_decay=0.0, momentum=0.9)
    from mimax.engine.optim import set_learning_rates

    set_learning_rates(opt, 0.25)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.1 if g["fixed_lr"] else 0.025)


def test_alternation_theta_step_then_xi_step_with_period():
    method, cfg = make("SDMI", "--alternation_period", "2")
    assert [method.active_optimizer(s) for s in range(6)] == ["online", "online", "target", "target",
                                                              "online", "online"]
    opts = {n: build_optimizer("adam", g, 1e-2, 0.0, 0.9) for n, g in method.optimizer_groups().items()}
    assert set(opts) == {"online", "target"}
    x_a, x_b = views()
    for step in range(4):
        before_f = [p.detach().clone() for p in method.online.parameters()]
        before_g = [p.detach().clone() for p in method.target.parameters()]
        active = opts[method.active_optimizer(step)]
        loss = method.training_loss(x_a, x_b, step)["loss"]
        active.zero_grad(set_to_none=True)
        loss.backward()
        active.step()
        f_moved = any(not torch.equal(a, p) for a, p in zip(before_f, method.online.parameters()))
        g_moved = any(not torch.equal(a, p) for a, p in zip(before_g, method.target.parameters()))
        assert (f_moved, g_moved) == ((True, False) if step < 2 else (False, True)), step


def test_encoders_rows_and_monitor_pairs():
    sdmi, _ = make("SDMI", "--predictor")
    assert sdmi.row_labels() == {"f_θ": "SDMI (f_θ)", "g_ξ": "SDMI (g_ξ)"}
    x_a, x_b = views()
    sdmi.eval()
    with torch.no_grad():
        pairs = sdmi.monitor_pairs(x_a, x_b)
        assert set(pairs) == {"embedding", "backbone", "backbone_g"}
        torch.testing.assert_close(pairs["embedding"][0], sdmi.predictor(sdmi.online(x_a)))
        torch.testing.assert_close(pairs["embedding"][1], sdmi.target(x_b))
        torch.testing.assert_close(pairs["backbone_g"][1], sdmi.target.features(x_b))
    byol, _ = make("BYOL")
    assert byol.row_labels() == {"f_θ": "BYOL"}
    byol.eval()
    with torch.no_grad():
        assert set(byol.monitor_pairs(x_a, x_b)) == {"embedding", "backbone"}


@pytest.mark.parametrize("name,flags,flag", [
    ("BYOL", ["--target_update", "copy"], "--target_update"),
    ("SimSiam", ["--predictor"], "--predictor"),
    ("SimSiam", ["--target_init", "independent"], "--target_init"),
    ("MoCoV3", ["--alternation_period", "3"], "--alternation_period"),
    ("SimCLR", ["--ema_momentum", "0.9"], "--ema_momentum"),
    ("VICReg", ["--predictor"], "--predictor"),
    ("BYOL", ["--no_marginal"], "--no_marginal"),
    ("SDMI", ["--target_update", "sometimes"], "--target_update"),
    ("SDMI", ["--alternation_period", "0"], "--alternation_period"),
    ("SDMI", ["--ema_momentum", "1.0"], "--ema_momentum"),
    ("BYOL", ["--ema_min_time_constants", "-1"], "--ema_min_time_constants"),
    ("SimSiam", ["--ema_min_time_constants", "10"], "--ema_min_time_constants"),
])
def test_method_options_are_validated(name, flags, flag):
    with pytest.raises(ConfigError, match=f"^{flag}"):
        make(name, *flags)


def test_sdmi_ablation_rules_build():
    ema, _ = make("SDMI", "--target_update", "ema", "--no_marginal", "--predictor")
    assert ema.rule == "ema" and list(ema.optimizer_groups()) == ["online"] and ema.encoders().keys() == {"f_θ"}
    cp, _ = make("SDMI", "--target_update", "copy")
    assert cp.target is None and cp.active_optimizer(1) == "online"


@pytest.mark.parametrize("name,flags", [("SDMI", ()), ("SDMI", ("--predictor",)), ("BYOL", ()), ("SimSiam", ())])
def test_monitor_pairs_are_the_branches_the_method_pairs(name, flags):
    """docs/methods.md §6: embedding = (q∘)f_θ(x^A) vs g_ξ(x^B); backbones paired within one network."""
    method = make(name, *flags)[0].eval()
    gen = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    with torch.no_grad():
        pairs = method.monitor_pairs(x_a, x_b)
        f, g = method.online, method.target_encoder
        u = f(x_a) if method.predictor is None else method.predictor(f(x_a))
        assert torch.allclose(pairs["embedding"][0], u) and torch.allclose(pairs["embedding"][1], g(x_b))
        assert torch.allclose(pairs["backbone"][0], f.features(x_a))
        assert torch.allclose(pairs["backbone"][1], f.features(x_b))
        if method.rule == "alternate":
            assert torch.allclose(pairs["backbone_g"][0], g.features(x_a))
            assert torch.allclose(pairs["backbone_g"][1], g.features(x_b))
        else:
            assert "backbone_g" not in pairs
