"""MI monitor and collapse monitors (docs/methods.md §6): the shuffled baseline, the collapse statistics against
NumPy, side-effect-free evaluation, and mi.csv / metrics.csv end to end."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from conftest import TINY_GAUSSIAN, run_cli, run_main
from mimax.bounds import BOUNDS
from mimax.cli import main
from mimax.config import config_from_args
from mimax.data import build_data
from mimax.engine.trainer import train_run
from mimax.methods import build_method
from mimax.monitors import default_callbacks
from mimax.monitors.base import evaluation_mode
from mimax.monitors.collapse import effective_rank, normalized_embedding_std
from mimax.monitors.mi import MI_CSV_COLUMNS, derangement, paired_and_shuffled, trained_critic_rows
from mimax.monitors.mi import fixed_critic_scores as estimate_mi


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --- shuffled-pair baseline ------------------------------------------------------------------------

def test_derangement_moves_every_index_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    for n in (2, 3, 10, 512):
        perm = derangement(n)
        assert sorted(perm.tolist()) == list(range(n))
        assert all(perm[i] != i for i in range(n))
        assert torch.equal(perm, derangement(n))  # fixed seed: the same baseline in every run and epoch
    assert torch.equal(before, torch.get_rng_state())


def _gaussian_pairs(rho: float, n: int = 512, d: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x, eps = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    return x, rho * x + math.sqrt(1 - rho**2) * eps


def _mean_estimates(rho: float) -> dict[str, tuple[float, float]]:
    perm = derangement(512)
    runs = [paired_and_shuffled(*_gaussian_pairs(rho, seed=s), 0.1, perm) for s in range(8)]
    return {k: (np.mean([r[k][0].item() for r in runs]), np.mean([r[k][1].item() for r in runs])) for k in BOUNDS}


def test_shuffling_drops_each_estimate_to_its_independence_value():
    dependent, independent = _mean_estimates(0.8), _mean_estimates(0.0)
    for name in BOUNDS:
        paired_dep, shuffled_dep = dependent[name]
        paired_ind, shuffled_ind = independent[name]
        gap_dep, gap_ind = paired_dep - shuffled_dep, paired_ind - shuffled_ind
        assert shuffled_dep < paired_dep, name  # dependent data: strictly lower
        # independent data: gap ~ 0 (the tolerance is ~6 standard errors of the 8 x 512-pair mean for JSD,
        # whose diagonal term, a mean over only N pairs, is the noisiest)
        assert abs(gap_ind) < 0.1 * gap_dep, (name, gap_ind, gap_dep)
        # the shuffled estimate of dependent data is the estimate of independent data with the same marginals
        assert abs(shuffled_dep - paired_ind) < 0.1 * gap_dep, (name, shuffled_dep, paired_ind)


def test_shuffled_scores_are_the_column_permuted_matrix():
    u, v = _gaussian_pairs(0.5, n=16, d=4)
    perm = derangement(16)
    from mimax.bounds import cosine_scores

    s = cosine_scores(u, v, 0.1)[:, perm]
    for name, (_, shuffled) in paired_and_shuffled(u, v, 0.1, perm).items():
        assert shuffled.item() == pytest.approx(BOUNDS[name](s).item(), rel=1e-5, abs=1e-5)


def test_collapse_gives_zero_gap():
    u = torch.ones(64, 3)
    v = torch.tensor([[1.0, -2.0, 0.5]]).repeat(64, 1)
    for name, (paired, shuffled) in paired_and_shuffled(u, v, 0.1, derangement(64)).items():
        assert paired.item() - shuffled.item() == pytest.approx(0.0, abs=1e-5), name


# --- collapse statistics ---------------------------------------------------------------------------

def test_normalized_std_matches_numpy_and_limits():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 5)) * [1, 2, 3, 0.5, 1] + 0.3
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    assert normalized_embedding_std(torch.tensor(z)).item() == pytest.approx(zn.std(0, ddof=1).mean(), rel=1e-12)
    sphere = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0))  # uniform directions on S^2
    assert normalized_embedding_std(sphere).item() == pytest.approx(1 / math.sqrt(3), abs=0.01)
    assert normalized_embedding_std(torch.ones(50, 3) * 7).item() == 0.0


def test_effective_rank_matches_numpy_and_limits():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    lam = np.clip(np.linalg.eigvalsh(np.cov(zn.T)), 0, None)
    p = lam / lam.sum()
    ref = math.exp(-sum(x * math.log(x) for x in p if x > 0))
    assert effective_rank(torch.tensor(z)).item() == pytest.approx(ref, rel=1e-9)
    iso = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0))
    assert effective_rank(iso).item() == pytest.approx(4.0, abs=0.02)
    line = torch.randn(100, 1, generator=torch.Generator().manual_seed(2)) * torch.tensor([[1.0, -2.0, 3.0]])
    assert effective_rank(line).item() == pytest.approx(1.0, abs=1e-6)  # normalized: +-w, one direction
    assert effective_rank(torch.ones(30, 4)).item() == 0.0


# --- side effects ----------------------------------------------------------------------------------

def _tiny_method_and_data(model_name: str = "JMI"):
    cfg = config_from_args([*TINY_GAUSSIAN, "--model_name", model_name])
    data = build_data(cfg, torch.device("cpu"), 0)
    torch.manual_seed(0)
    return cfg, build_method(cfg, data.input_shape), data


def test_evaluation_mode_restores_each_module_and_changes_nothing():
    _, method, data = _tiny_method_and_data()
    method.train()
    method.encoder.projector.eval()  # a module the method keeps in eval mode stays so
    buffers = {k: v.clone() for k, v in method.state_dict().items()}
    with evaluation_mode(method):
        assert not any(m.training for m in method.modules())
        out = method.encoder(data.monitor_views[0])
        assert not out.requires_grad
    assert method.training and method.encoder.backbone.training and not method.encoder.projector.training
    for k, v in method.state_dict().items():  # BatchNorm running statistics untouched
        assert torch.equal(v, buffers[k]), k


def test_estimate_mi_rows_and_no_global_rng_use():
    cfg, method, data = _tiny_method_and_data()
    method.train()
    rng = torch.get_rng_state()
    x_a, x_b = data.monitor_views
    rows = estimate_mi(method, x_a, x_b, 100, 0.1, torch.device("cpu"))
    assert torch.equal(rng, torch.get_rng_state())
    assert method.training
    assert {(r["representation"], r["estimator"]) for r in rows} == {
        (rep, est) for rep in ("embedding", "backbone") for est in BOUNDS}
    for r in rows:
        assert r["batch_size"] == 100 and r["num_batches"] == 256 // 100  # full batches only
        assert r["gap"] == pytest.approx(r["value"] - r["shuffled"])
        if r["estimator"] == "InfoNCE":
            assert r["log_n"] == pytest.approx(math.log(100))
            assert r["value"] <= r["log_n"]
    assert rows == estimate_mi(method, x_a, x_b, 100, 0.1, torch.device("cpu"))  # deterministic


def test_trained_critic_cache_gives_the_fitted_rows_without_fitting_again(tmp_path, monkeypatch):
    u, v = _gaussian_pairs(0.8, n=128, d=2)
    pairs = {"embedding": (u, v), "backbone": (u, v.flip(0))}
    opts = dict(hidden=8, embed_dim=4, batch_size=32, max_steps=20, eval_every=10)
    fresh = trained_critic_rows(pairs, ("embedding", "backbone"), None, **opts)
    assert trained_critic_rows(pairs, ("embedding", "backbone"), tmp_path, **opts) == fresh
    assert len(list(tmp_path.glob("*.json"))) == 2  # one per distinct pair

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr("mimax.monitors.mi.estimate_mi", no_fit)
    assert trained_critic_rows(pairs, ("embedding", "backbone"), tmp_path, **opts) == fresh  # read back, equal
    # another representation name with the same pair is the same estimate
    assert trained_critic_rows({"other": (u, v)}, ("other",), tmp_path, **opts)[0]["value"] == fresh[0]["value"]
    for changed, o in (({"embedding": (u, v * 1.5)}, opts), ({"embedding": (u * 1.5, v)}, opts),
                       ({"embedding": (u, v)}, {**opts, "max_steps": 21})):
        with pytest.raises(AssertionError, match="fitted again"):  # other data or options: a miss
            trained_critic_rows(changed, ("embedding",), tmp_path, **o)


def test_monitoring_does_not_change_training(tmp_path):
    cfg = config_from_args([*TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "2", "--mi_interval", "1",
                            "--mi_critic_interval", "0"])
    plain = train_run(cfg, tmp_path / "plain", 0, [], progress=False)
    monitored = train_run(cfg, tmp_path / "mon", 0, default_callbacks(cfg, tmp_path / "mon"), progress=False)
    assert plain == monitored
    a = torch.load(tmp_path / "plain" / "checkpoints" / "ckpt_epoch_0002.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "mon" / "checkpoints" / "ckpt_epoch_0002.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = [[r["loss"] for r in read_rows(tmp_path / d / "metrics.csv")] for d in ("plain", "mon")]
    assert losses[0] == losses[1]
    assert (tmp_path / "mon" / "mi.csv").is_file() and not (tmp_path / "plain" / "mi.csv").exists()


# --- end to end ------------------------------------------------------------------------------------

def test_mi_csv_is_reproducible_and_complete_through_main_py(tmp_path):
    args = [*TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "3", "--mi_interval", "2", "--mi_batch_size", "128",
            "--mi_critic_interval", "0"]
    proc = run_main([*args, "--output_dir", str(tmp_path / "a")])
    assert proc.returncode == 0, proc.stderr
    assert main(["train", *args, "--output_dir", str(tmp_path / "b")]) == 0  # same seed, another process
    assert main(["train", *args, "--seed", "1", "--output_dir", str(tmp_path / "c")]) == 0
    a, b = (read_rows(tmp_path / x / "seed_0" / "mi.csv") for x in "ab")
    c = read_rows(tmp_path / "c" / "seed_1" / "mi.csv")
    assert a == b
    assert a != c
    assert list(a[0]) == MI_CSV_COLUMNS
    assert sorted({int(r["epoch"]) for r in a}) == [0, 2, 3]  # before the first step, every 2 epochs, the last
    assert {r["step"] for r in a if r["epoch"] == "0"} == {"0"}
    fixed = [r for r in a if r["estimator"] != "critic-InfoNCE"]
    assert {(r["batch_size"], r["num_batches"], r["tau_est"]) for r in fixed} == {("128", "2", "0.1")}
    # the trained critic: first and last epoch (--mi_critic_interval 0), embedding and backbone, with its
    # interval, below its ceiling
    critic = [r for r in a if r["estimator"] == "critic-InfoNCE"]
    assert sorted((int(r["epoch"]), r["representation"]) for r in critic) == [
        (0, "backbone"), (0, "embedding"), (3, "backbone"), (3, "embedding")]
    for r in critic:
        assert float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"])
        assert float(r["value"]) <= float(r["log_n"])
        assert r["shuffled"] == r["gap"] == ""
    metrics = read_rows(tmp_path / "a" / "seed_0" / "metrics.csv")
    assert all(0 < float(r["emb_std_f"]) < 1 and 0 < float(r["emb_erank_f"]) <= 3 for r in metrics)
    assert all(1 <= float(r["rankme_f"]) <= 3 and math.isfinite(float(r["alpha_req_f"])) for r in metrics)
    by_epoch = {int(r["epoch"]): r for r in metrics}
    assert by_epoch[1]["lidar_embedding"] == "" and by_epoch[2]["mi_critic_embedding"] == ""
    assert float(by_epoch[3]["mi_critic_embedding"]) == float(critic[2]["value"])
    for e in (2, 3):
        assert 1 <= float(by_epoch[e]["lidar_embedding"]) <= 3 and 0 <= float(by_epoch[e]["alignment_embedding"]) <= 4
        assert -4 <= float(by_epoch[e]["uniformity_backbone"]) <= 0
    # the run's monitors figure: written, its trained-critic panel drawn from mi.csv, whole epochs on every axis
    from mimax.monitors.figure import plot_monitors

    assert (tmp_path / "a" / "seed_0" / "monitors.png").read_bytes()[:4] == b"\x89PNG"
    fig = plot_monitors(tmp_path / "a" / "seed_0")
    curve = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "embedding (trained critic)")
    assert list(curve.get_xdata()) == [0, 3]
    assert list(curve.get_ydata()) == [float(r["value"]) for r in critic if r["representation"] == "embedding"]
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


def test_resumed_run_writes_the_same_mi_csv(tmp_path):
    args = [*TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "3", "--mi_interval", "1", "--mi_critic_interval", "0"]
    assert main(["train", *args, "--output_dir", str(tmp_path / "full")]) == 0
    assert main(["train", *args, "--output_dir", str(tmp_path / "part"), "--stop_after", "1"]) == 0
    # a later, unsaved session's rows must not survive the resume: append a fake epoch-2 row
    part = tmp_path / "part" / "seed_0" / "mi.csv"
    rows = read_rows(part)
    with open(part, "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=MI_CSV_COLUMNS).writerow({**rows[-1], "epoch": "2", "value": "99"})
    assert main(["train", "--resume", str(tmp_path / "part"), "--stop_after", "5"]) == 0
    assert read_rows(tmp_path / "full" / "seed_0" / "mi.csv") == read_rows(part)


def test_mi_interval_zero_turns_the_mi_monitor_off(tmp_path):
    assert main(["train", *TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "1", "--mi_interval", "0",
                 "--output_dir", str(tmp_path / "r")]) == 0
    assert not (tmp_path / "r" / "seed_0" / "mi.csv").exists()
    assert "emb_std_f" in read_rows(tmp_path / "r" / "seed_0" / "metrics.csv")[0]


@pytest.mark.parametrize("flag,value", [("--mi_interval", "-1"), ("--mi_temperature", "0"),
                                        ("--mi_batch_size", "1")])
def test_bad_monitor_flags_are_one_line_errors(tmp_path, capsys, flag, value):
    assert main(["train", *TINY_GAUSSIAN, flag, value, "--output_dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mimax: error: {flag}:")
    assert not (tmp_path / "r").exists()


def test_bad_monitor_flag_through_main_py(tmp_path):
    proc = run_cli(["train", *TINY_GAUSSIAN, "--mi_batch_size", "1", "--output_dir", str(tmp_path / "r")])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--mi_batch_size" in proc.stderr and "Traceback" not in proc.stderr


def test_monitors_of_a_bf16_run_embed_in_bf16_like_the_run():
    """A run trained under bf16 autocast is monitored through the same autocast: the MI monitor's pairs and
    the collapse monitor's statistics equal those of embeddings computed by hand under autocast (and the
    fp32 ones differ, so the check can tell). An fp32 run's monitors stay fp32."""
    from mimax.monitors.base import run_dtype
    from mimax.monitors.collapse import CollapseMonitor, encoder_embeddings
    from mimax.monitors.mi import monitor_embeddings

    cfg = config_from_args(["--dataset", "Digits", "--model_name", "SimCLR", "--resnet_width", "4",
                            "--precision", "bf16", "--monitor_size", "64", "--mi_batch_size", "32"])
    assert run_dtype(cfg) == torch.bfloat16 and run_dtype(None) is None
    assert run_dtype(config_from_args(["--precision", "fp32"])) is None
    data = build_data(cfg, torch.device("cpu"), 0)
    torch.manual_seed(0)
    method = build_method(cfg, data.input_shape)
    x_a, x_b = data.monitor_views
    cpu = torch.device("cpu")
    got = monitor_embeddings(method, x_a, x_b, 32, cpu, run_dtype(cfg))
    with evaluation_mode(method), torch.autocast("cpu", dtype=torch.bfloat16):
        want = {rep: (u.float(), v.float()) for rep, (u, v) in method.monitor_pairs(x_a[:32], x_b[:32]).items()}
        encoder = next(iter(method.encoders().values()))
        z = encoder_embeddings(encoder, x_a, 32, cpu)
    with evaluation_mode(method):
        fp32 = monitor_embeddings(method, x_a, x_b, 32, cpu)
    for rep, (u, v) in want.items():
        assert torch.equal(got[rep][0][:32], u) and torch.equal(got[rep][1][:32], v), rep
        assert not torch.equal(fp32[rep][0][:32], u), rep
    state = type("State", (), {"cfg": cfg, "method": method, "data": data, "device": cpu})()
    key = next(iter(method.encoders()))
    measured = CollapseMonitor(32).measure(state)
    assert measured[f"emb_std_{key}"] == pytest.approx(normalized_embedding_std(z).item(), rel=1e-6)


def test_collapse_monitor_interval_measures_every_kth_and_the_last_epoch(tmp_path):
    """``mimax demo``'s setting: the collapse monitor at every k-th epoch and the last, with the values an
    every-epoch monitor records at those epochs (monitors do not change training)."""
    from mimax.monitors.collapse import CollapseMonitor

    cfg = config_from_args([*TINY_GAUSSIAN, "--model_name", "SimCLR", "--epochs", "5", "--mi_interval", "0"])
    train_run(cfg, tmp_path / "every", 0, [CollapseMonitor(64)], progress=False)
    train_run(cfg, tmp_path / "some", 0, [CollapseMonitor(64, interval=2)], progress=False)
    every, some = (read_rows(tmp_path / d / "metrics.csv") for d in ("every", "some"))
    assert [int(r["epoch"]) for r in some if r.get("emb_std_f")] == [2, 4, 5]
    for a, b in zip(every, some):
        if b.get("emb_std_f"):
            assert {k: v for k, v in a.items() if k.startswith(("emb_", "rankme", "alpha_req"))} == {
                k: v for k, v in b.items() if k.startswith(("emb_", "rankme", "alpha_req"))}
    with pytest.raises(ValueError, match="interval"):
        CollapseMonitor(64, stop_on_collapse=2, interval=2)  # consecutive epochs need every epoch


@pytest.mark.parametrize("monitor_size,critic,noted", [("128", "0", True), ("128", "-1", False), ("512", "0", False)])
def test_a_monitor_set_too_small_for_the_trained_critic_is_said(tmp_path, capsys, monitor_size, critic, noted):
    """On 128 monitor pairs the critic is validated on 12: estimates read below 0 nats with an interval excluding 0
    (now floored: 0 nats whatever the dependence) and nothing said why. A note says it (not when the trained critic
    is off, or the set is large enough)."""
    args = ["train", "--model_name", "SimCLR", "--dataset", "Gaussian", "--epochs", "1", "--gm_train_size", "256",
            "--gm_test_size", "128", "--gm_monitor_size", monitor_size, "--mi_critic_interval", critic,
            "--num_threads", "1", "--output_dir", str(tmp_path / "r")]
    assert main(args) == 0
    out = capsys.readouterr().out
    note = (f"note: MI estimate on {monitor_size} monitor pairs: the trained critic is validated on a tenth of them, "
            "too few to reject one that does not generalize, which then reads 0 nats; 512 pairs or more make it "
            "reliable (--monitor_size, --gm_monitor_size)")
    assert (note in out.splitlines()) == noted, out
