"""SimSiam (Chen & He, 2021, "Exploring Simple Siamese Representation Learning", arXiv:2011.10566):
self-distillation whose target is the online encoder itself (stop-gradient only) and a bottleneck MLP
predictor trained with a fixed learning rate."""

from __future__ import annotations

from mimax.objectives import simsiam_loss
from mimax.paradigms import SelfDistillationMethod


class SimSiam(SelfDistillationMethod):
    name = "SimSiam"
    target_update = "copy"
    has_predictor = True
    predictor_desc = "MLP D-h-D bottleneck, fixed LR"
    objective_desc = "-cos(q(f(x^A)), sg(f(x^B))), the two swaps averaged"
    reference = "Chen & He, 2021, arXiv:2011.10566"
    projector_last_bn = True
    predictor_fixed_lr = True  # the paper's §4.1 "fix lr" for the predictor

    @classmethod
    def preset(cls, dataset: str) -> dict:
        if dataset == "Gaussian":  # docs/methods.md §7: predictor D -> 64 -> D
            return {"predictor_dim": 64}
        # solo-learn's CIFAR SimSiam config: projector 2048 -> 2048 (3 layers, last BN), predictor 512
        return {"predictor_dim": 512, "feature_dim": 2048, "projection_dim": 2048, "projection_layer": 3}

    def objective(self, p, z):
        return simsiam_loss(p, z)
