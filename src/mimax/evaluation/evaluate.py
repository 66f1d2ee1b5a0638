"""Evaluation of a method's encoders during and after training (docs/evaluation.md): for every encoder
the method exposes, the linear probe and kNN on frozen backbone features and a linear probe on the
embedding (the projector's output), each extracted as its own feature matrix."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from mimax.data import DataBundle
from mimax.evaluation.probe import extract_features, knn_accuracy, linear_probe
from mimax.fit import knn_k_for
from mimax.paradigms import Method
from mimax.runtime.device import autocast_to
from mimax.store import faults
from mimax.store.memo import recall


@torch.no_grad()
def evaluate(method: Method, data: DataBundle, device: torch.device, knn_k: int = 200,
             knn_temperature: float = 0.07, dtype: torch.dtype | None = None,
             cache: Path | None = None) -> dict[str, dict[str, float]]:
    """``{row label: {"linear", "knn", "linear_embedding": top-1}}`` for every encoder of the method, in
    eval mode (the training flags are restored). Empty if the dataset has no labels. ``dtype``: the
    features are extracted under autocast to it (the run's ``--precision``), the probes fit in fp32.
    ``cache``: a folder shared by runs whose features may coincide (:func:`evaluate_encoder`)."""
    if data.probe_train is None or data.probe_test is None or not data.num_classes:
        return {}
    results = {}
    was_training = method.training
    method.eval()
    try:
        for key, label in method.row_labels().items():
            results[label] = evaluate_encoder(method.encoders()[key], data, device, knn_k, knn_temperature, dtype,
                                              cache)
    finally:
        method.train(was_training)
    return results


def evaluate_encoder(encoder: nn.Module, data: DataBundle, device: torch.device, knn_k: int = 200,
                     knn_temperature: float = 0.07, dtype: torch.dtype | None = None,
                     cache: Path | None = None) -> dict[str, float]:
    """Backbone features h = f(x) and embeddings z = g(h) of the clean probe splits (extracted under
    autocast to ``dtype`` when given, returned in fp32); linear probe and kNN on h, linear probe on z.

    ``cache``: each probe's accuracy is kept in this folder under the SHA-256 of its features, labels and
    settings (:mod:`mimax.store.memo`) and read back for the same inputs: ``mimax demo``'s configurations
    share their encoders' initialization, hence their epoch-0 features. The probes are deterministic, so a
    hit is the accuracy the fit would give on this machine and thread count."""

    def backbone_and_embedding(x: Tensor) -> tuple[Tensor, Tensor]:
        with autocast_to(device, dtype):
            h = encoder.backbone(x)
            return h, encoder.projector(h)

    workers = data.extras.get("eval_workers", 0)
    (h_tr, z_tr), y_tr = extract_features(backbone_and_embedding, data.probe_train, device, num_workers=workers)
    if faults.ARMED:
        faults.hit("eval")
    (h_te, z_te), y_te = extract_features(backbone_and_embedding, data.probe_test, device, num_workers=workers)
    k, knn_k = data.num_classes, knn_k_for(knn_k, h_tr.shape[0])

    def probe(name: str, features: tuple[Tensor, Tensor], fit, **options) -> float:
        inputs = (features[0], y_tr, features[1], y_te)
        return recall(cache, inputs, {"probe": name, "classes": k, **options},
                      lambda: {"accuracy": fit(*inputs, k, **options)})["accuracy"]

    return {"linear": probe("linear", (h_tr, h_te), linear_probe),
            "knn": probe("knn", (h_tr, h_te), knn_accuracy, k=knn_k, temperature=knn_temperature),
            "linear_embedding": probe("linear", (z_tr, z_te), linear_probe)}
