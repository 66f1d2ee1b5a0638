"""The monitors for any model: mimax.monitor_values (against the individual monitor functions), the
docs example on a torchvision model, and the Lightning callback in a 1-epoch CPU fit."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import mimax
from conftest import ROOT
from mimax.monitors.rank import alignment, lidar, rankme

DOCS = ROOT / "docs" / "monitoring.md"


def _pairs(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    noisy = [torch.tensor(z + 0.3 * rng.normal(size=z.shape)).float() for _ in range(2)]
    return noisy[0], noisy[1]


def test_monitor_values_agree_with_the_monitors_and_the_two_call_forms():
    za, zb = _pairs()
    out = mimax.monitor_values(za, zb)
    assert out["rankme"] == pytest.approx(rankme(za).item(), rel=1e-6)
    assert out["lidar"] == pytest.approx(lidar(torch.stack([za, zb], 1)).item(), rel=1e-5)
    assert out["alignment"] == pytest.approx(alignment(za, zb).item(), rel=1e-6)
    assert out["mi_infonce_low"] <= out["mi_infonce"] <= out["mi_infonce_high"] <= out["mi_log_n"] + 0.5
    assert out["mi_infonce"] > 1.0  # strongly dependent views (per-dim correlation 0.92 over 8 dims)
    for name in ("cos-DV", "InfoNCE", "JSD"):
        assert out[f"score_{name}_gap"] == pytest.approx(out[f"score_{name}"] - out[f"score_{name}_shuffled"])
    batches = [(za[i:i + 100], zb[i:i + 100]) for i in range(0, 600, 100)]
    via_fn = mimax.monitor_values(lambda b: b, batches, max_pairs=600)
    assert via_fn == out
    assert "mi_infonce" not in mimax.monitor_values(za, zb, mi=False)
    with pytest.raises(ValueError, match="equal shape"):
        mimax.monitor_values(za, zb[:, :3])
    for bad in (float("nan"), float("inf")):  # was torch's _LinAlgError from the SVD
        with pytest.raises(ValueError, match=r"must be finite \(found NaN or inf\)"):
            mimax.monitor_values(za, zb.clone().index_fill_(0, torch.tensor([5]), bad))


def test_float64_embeddings_beyond_float32_range_are_monitored_and_batch_size_is_checked():
    # they were cast to float32 first (inf), then refused as "must be finite"; the fixed-critic scores NaN
    za, zb = _pairs(n=64, d=4)
    za, zb = za.double(), zb.double()
    plain = mimax.monitor_values(za, zb, mi=False)
    huge = mimax.monitor_values(za * 1e39, zb * 1e39, mi=False)
    for key, value in plain.items():
        if key != "lidar":  # LiDAR's ridge delta is absolute (Thilak et al.): its value depends on the scale
            assert huge[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for bad in (0, 1, 2.5):  # was "a derangement needs n >= 2", naming an internal
        with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
            mimax.monitor_values(za, zb, batch_size=bad)
    assert "mi_infonce" not in mimax.monitor_values(za[:15], zb[:15])  # documented: fewer than 16 pairs
    for bad in (float("nan"), 0.0, -1.0, float("inf")):  # NaN gave NaN scores silently
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            mimax.monitor_values(za, zb, temperature=bad, mi=False)


def test_docs_example_runs_on_a_torchvision_model(capsys):
    text = DOCS.read_text()
    code = re.search(r"<!-- example: any-model -->\s*```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, str(DOCS), "exec"), scope)
    values = scope["values"]
    for key in ("rankme", "lidar", "alpha_req", "alignment", "uniformity", "score_InfoNCE_gap", "mi_infonce"):
        assert np.isfinite(values[key]), key
    assert 1 <= values["rankme"] <= 128
    # a validated, held-out lower bound: not far below 0 (the first, overfitted check printed -1.9 nats here)
    assert values["mi_infonce"] > -0.15 and values["mi_infonce_high"] >= 0
    assert "rankme" in capsys.readouterr().out


def test_lightning_callback_logs_the_monitors_in_a_one_epoch_cpu_fit(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from mimax.integrations.lightning import MonitorCallback

    za, zb = _pairs(256, 6, seed=1)

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 4))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            a, b = self(batch[0]), self(batch[1])
            return ((a - b) ** 2).mean() - a.std(0).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(za, zb), batch_size=64)
    cb = MonitorCallback(loader, embed=lambda m, b: (m(b[0]), m(b[1])))
    model = Tiny()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, callbacks=[cb], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(model, loader)
    assert model.training  # modes restored
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("mimax/")}
    assert {"mimax/rankme", "mimax/lidar", "mimax/uniformity", "mimax/mi_infonce"} <= set(logged)
    model.eval()
    with torch.no_grad():
        direct = mimax.monitor_values(model(za), model(zb))
    assert logged["mimax/rankme"] == pytest.approx(direct["rankme"], rel=1e-5)
    assert logged["mimax/mi_infonce"] == pytest.approx(direct["mi_infonce"], rel=1e-5)


@pytest.mark.parametrize("limits,expected", [
    # max_steps alone: Lightning sets max_epochs = -1, and every epoch counted as the last (MI every epoch, the
    # every_n_epochs setting ignored)
    (dict(max_steps=12), [(2, False), (3, True)]),  # 4 steps an epoch: the fit ends in epoch 3, its last
    (dict(max_epochs=4), [(2, False), (4, True)]),
])
def test_lightning_callback_finds_the_last_epoch_of_any_fit(tmp_path, limits, expected):
    pl = pytest.importorskip("lightning.pytorch")
    from mimax.integrations.lightning import MonitorCallback

    za, zb = _pairs(256, 6, seed=1)

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(6, 4)

        def training_step(self, batch, _):
            return ((self.net(batch[0]) - self.net(batch[1])) ** 2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Seen(MonitorCallback):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls = []

        def on_train_epoch_end(self, trainer, pl_module):
            before = self.last
            super().on_train_epoch_end(trainer, pl_module)
            if self.last is not before:  # measured this epoch (monitor_values returns a new dict)
                self.calls.append((trainer.current_epoch + 1, "mi_infonce" in self.last))

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(za, zb), batch_size=64)
    cb = Seen(loader, embed=lambda m, b: (m.net(b[0]), m.net(b[1])), every_n_epochs=2, max_pairs=128)
    trainer = pl.Trainer(accelerator="cpu", devices=1, callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **limits)
    trainer.fit(Tiny(), loader)
    assert cb.calls == expected
