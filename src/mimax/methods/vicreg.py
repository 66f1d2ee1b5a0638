"""VICReg (Bardes, Ponce & LeCun, 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", arXiv:2105.04906): a joint method whose marginal term is realized by the
variance and covariance regularizers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimax.objectives import vicreg_loss
from mimax.paradigms import JointMethod, MethodOptions, option
from mimax.paradigms.options import recipe, require

PAPER = "VICReg paper §4.2"


@dataclass(frozen=True)
class VICRegOptions(MethodOptions):
    vicreg_sim_coeff: float = option(25.0, "weight of the invariance (MSE) term", PAPER)
    vicreg_std_coeff: float = option(25.0, "weight of the variance (std hinge) term", PAPER)
    vicreg_cov_coeff: float = option(1.0, "weight of the covariance term", PAPER)

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        # solo-learn's vicreg.yaml (CIFAR, ImageNet-100): LARS 0.3, projector 2048 -> 2048 (3 layers)
        lars = dict(optimizer="lars", initial_lr=0.3, weight_decay=1e-4, feature_dim=2048, projection_dim=2048,
                    projection_layer=3)
        return recipe(dataset, cifar=lars, imagenet100=dict(lars, architecture="ResNet50"),
                      fashion=dict(lars, initial_lr=0.15, feature_dim=512, projection_dim=512))

    def check(self) -> None:
        for name in ("vicreg_sim_coeff", "vicreg_std_coeff", "vicreg_cov_coeff"):
            require(getattr(self, name) >= 0, name, f"must be >= 0 (got {getattr(self, name)})")


class VICReg(JointMethod):
    name = "VICReg"
    objective_desc = "25 MSE + 25 (v(z_a) + v(z_b))/2 + 1 (c(z_a) + c(z_b)), official per-view reduction"
    reference = "Bardes, Ponce & LeCun, 2022, arXiv:2105.04906"
    view_recipe = "byol"  # its paper uses BYOL's augmentation
    Options = VICRegOptions

    def objective(self, z_a, z_b):
        o = self.options
        return vicreg_loss(z_a, z_b, o.vicreg_sim_coeff, o.vicreg_std_coeff, o.vicreg_cov_coeff)
