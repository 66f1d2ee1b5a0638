"""evaluate(): every encoder of the method, on backbone features and embeddings extracted separately,
checked against the probe functions applied to features computed by hand (no config width involved)."""

from __future__ import annotations

import pytest
import torch

from mimax.config import config_from_args
from mimax.data import build_data
from mimax.evaluation.evaluate import evaluate
from mimax.evaluation.probe import knn_accuracy, linear_probe
from mimax.methods import build_method

TINY = ["--dataset", "Gaussian", "--gm_train_size", "256", "--gm_test_size", "128", "--gm_monitor_size", "64",
        "--batch_size", "64"]


def _features(encoder, dataset):
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])
    with torch.no_grad():
        h = encoder.backbone(x)
        return h, encoder.projector(h), y


def test_evaluate_matches_probes_on_hand_extracted_features():
    cfg = config_from_args([*TINY, "--model_name", "SDMI", "--projection_dim", "5"])
    data = build_data(cfg, torch.device("cpu"), 0)
    torch.manual_seed(0)
    method = build_method(cfg, data.input_shape)
    method.train()
    got = evaluate(method, data, torch.device("cpu"), knn_k=20, knn_temperature=0.1)
    assert set(got) == {"SDMI (f_θ)", "SDMI (g_ξ)"} and method.training  # the training flag is restored
    method.eval()
    for key, label in method.row_labels().items():
        encoder = method.encoders()[key]
        h_tr, z_tr, y_tr = _features(encoder, data.probe_train)
        h_te, z_te, y_te = _features(encoder, data.probe_test)
        k = data.num_classes
        assert z_tr.shape[1] == 5 and h_tr.shape[1] == cfg.mlp_hidden_dim
        want = {"linear": linear_probe(h_tr, y_tr, h_te, y_te, k),
                "knn": knn_accuracy(h_tr, y_tr, h_te, y_te, k, 20, 0.1),
                "linear_embedding": linear_probe(z_tr, y_tr, z_te, y_te, k)}
        assert got[label] == want


def test_evaluate_extracts_features_under_the_given_autocast_dtype():
    """``dtype``: the features come from the encoder run under autocast (what a bf16 run trained in),
    matching hand-extracted autocast features; the probes then fit in fp32. Without it, fp32 features."""
    cfg = config_from_args([*TINY, "--model_name", "SimCLR"])
    data = build_data(cfg, torch.device("cpu"), 0)
    torch.manual_seed(0)
    method = build_method(cfg, data.input_shape).eval()
    encoder = next(iter(method.encoders().values()))
    got = evaluate(method, data, torch.device("cpu"), knn_k=20, knn_temperature=0.1, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h_tr, z_tr, y_tr = _features(encoder, data.probe_train)
        h_te, z_te, y_te = _features(encoder, data.probe_test)
    assert h_tr.dtype == torch.bfloat16  # the MLP's linear layers do run in bf16 under autocast
    h_tr, z_tr, h_te, z_te = (t.float() for t in (h_tr, z_tr, h_te, z_te))
    k = data.num_classes
    want = {"linear": linear_probe(h_tr, y_tr, h_te, y_te, k),
            "knn": knn_accuracy(h_tr, y_tr, h_te, y_te, k, 20, 0.1),
            "linear_embedding": linear_probe(z_tr, y_tr, z_te, y_te, k)}
    assert next(iter(got.values())) == want
    fp32 = evaluate(method, data, torch.device("cpu"), knn_k=20, knn_temperature=0.1)
    h32 = _features(encoder, data.probe_train)[0]
    assert not torch.equal(h32, h_tr)  # bf16 rounding is visible in the features the probes see
    assert set(fp32) == set(got)


def test_evaluate_with_a_cache_reads_back_what_the_probes_gave(tmp_path, monkeypatch):
    """``cache``: the accuracies of the first call, read back for the same features without fitting again;
    other features (another initialization) or another kNN setting are fitted."""
    cfg = config_from_args([*TINY, "--model_name", "SimCLR"])
    data = build_data(cfg, torch.device("cpu"), 0)
    torch.manual_seed(0)
    method = build_method(cfg, data.input_shape)
    fresh = evaluate(method, data, torch.device("cpu"), knn_k=20, knn_temperature=0.1)
    assert evaluate(method, data, torch.device("cpu"), knn_k=20, knn_temperature=0.1, cache=tmp_path) == fresh
    assert len(list(tmp_path.glob("*.json"))) == 3  # linear and kNN on the backbone, linear on the embedding

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr("mimax.evaluation.evaluate.linear_probe", no_fit)
    monkeypatch.setattr("mimax.evaluation.evaluate.knn_accuracy", no_fit)
    assert evaluate(method, data, torch.device("cpu"), knn_k=20, knn_temperature=0.1, cache=tmp_path) == fresh
    torch.manual_seed(1)
    other = build_method(cfg, data.input_shape)
    for m, k in ((other, 20), (method, 10)):
        with pytest.raises(AssertionError, match="fitted again"):
            evaluate(m, data, torch.device("cpu"), knn_k=k, knn_temperature=0.1, cache=tmp_path)
