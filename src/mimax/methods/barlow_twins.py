"""Barlow Twins (Zbontar et al., 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
arXiv:2103.03230): a joint method whose marginal term is the cross-correlation redundancy penalty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimax.objectives import barlow_twins_loss
from mimax.paradigms import JointMethod, MethodOptions, option
from mimax.paradigms.options import recipe, require


@dataclass(frozen=True)
class BarlowTwinsOptions(MethodOptions):
    barlow_lambda: float = option(5.1e-3, "weight of the off-diagonal (redundancy) term", "Barlow Twins paper §2")
    barlow_scale: float = option(1.0, "overall loss scale", "Barlow Twins paper (no scale)")

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        # Gaussian: the paper's lambda, no scale. solo-learn's barlow.yaml (CIFAR, ImageNet-100): LARS 0.3,
        # projector 2048 -> 2048 (3 layers), scale_loss 0.1
        lars = dict(optimizer="lars", initial_lr=0.3, weight_decay=1e-4, feature_dim=2048, projection_dim=2048,
                    projection_layer=3, barlow_scale=0.1)
        return recipe(dataset, cifar=lars, imagenet100=dict(lars, architecture="ResNet50"),
                      fashion=dict(lars, initial_lr=0.15, feature_dim=512, projection_dim=512),
                      image_extra={"barlow_scale": 0.1})

    def check(self) -> None:
        require(self.barlow_lambda >= 0, "barlow_lambda", f"must be >= 0 (got {self.barlow_lambda})")
        require(self.barlow_scale > 0, "barlow_scale", f"must be > 0 (got {self.barlow_scale})")


class BarlowTwins(JointMethod):
    name = "BarlowTwins"
    objective_desc = "sum_i (1 - C_ii)^2 + lambda sum_{i!=j} C_ij^2 (times scale), C the cross-correlation"
    reference = "Zbontar et al., 2021, arXiv:2103.03230"
    view_recipe = "byol"  # its paper uses BYOL's augmentation
    Options = BarlowTwinsOptions

    def objective(self, z_a, z_b):
        return barlow_twins_loss(z_a, z_b, self.options.barlow_lambda, self.options.barlow_scale)
