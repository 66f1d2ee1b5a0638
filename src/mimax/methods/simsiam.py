"""SimSiam (Chen & He, 2021, "Exploring Simple Siamese Representation Learning", arXiv:2011.10566):
self-distillation whose target is the online encoder itself (stop-gradient only) and a bottleneck MLP
predictor trained with a fixed learning rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimax.objectives import simsiam_loss
from mimax.paradigms import MethodOptions, SelfDistillationMethod, option
from mimax.paradigms.options import check_predictor, recipe


@dataclass(frozen=True)
class SimSiamOptions(MethodOptions):
    predictor_dim: int = option(512, "predictor hidden width h (bottleneck MLP D-h-D)",
                                "SimSiam paper §3; solo-learn's CIFAR SimSiam config")

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        if dataset == "Gaussian":  # the controlled experiment: predictor D -> 64 -> D
            return {"predictor_dim": 64}
        # solo-learn's simsiam.yaml (CIFAR, ImageNet-100): SGD 0.5, projector 2048 -> 2048 (3 layers, last BN)
        sgd = dict(optimizer="sgd", initial_lr=0.5, weight_decay=1e-5, feature_dim=2048, projection_dim=2048,
                   projection_layer=3)
        return recipe(
            dataset, cifar=sgd, imagenet100=dict(sgd, architecture="ResNet50"),
            fashion=dict(sgd, initial_lr=0.25, feature_dim=512, projection_dim=512, predictor_dim=128))

    def check(self) -> None:
        check_predictor(self)


class SimSiam(SelfDistillationMethod):
    name = "SimSiam"
    rule = "copy"
    target_update_desc = "copy"
    has_predictor = True
    predictor_desc = "MLP D-h-D bottleneck, fixed LR"
    objective_desc = "-cos(q(f(x^A)), sg(f(x^B))), the two swaps averaged"
    reference = "Chen & He, 2021, arXiv:2011.10566"
    projector_last_bn = True
    predictor_fixed_lr = True  # the paper's §4.1 "fix lr" for the predictor
    Options = SimSiamOptions

    def objective(self, p, z):
        return simsiam_loss(p, z)
