"""Barlow Twins (Zbontar et al., 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
arXiv:2103.03230): a joint method whose marginal term is the cross-correlation redundancy penalty."""

from __future__ import annotations

from mimax.objectives import barlow_twins_loss
from mimax.paradigms import JointMethod


class BarlowTwins(JointMethod):
    name = "BarlowTwins"
    objective_desc = "sum_i (1 - C_ii)^2 + lambda sum_{i!=j} C_ij^2 (times scale), C the cross-correlation"
    reference = "Zbontar et al., 2021, arXiv:2103.03230"
    view_recipe = "byol"  # its paper uses BYOL's augmentation

    @classmethod
    def preset(cls, dataset: str) -> dict:
        if dataset == "Gaussian":  # the paper's lambda, no scale
            return {"barlow_lambda": 5.1e-3, "barlow_scale": 1.0}
        # solo-learn's CIFAR Barlow Twins config: projector 2048 -> 2048 (3 layers), scale_loss 0.1
        return {"barlow_lambda": 5.1e-3, "barlow_scale": 0.1, "feature_dim": 2048, "projection_dim": 2048,
                "projection_layer": 3}

    def objective(self, z_a, z_b):
        return barlow_twins_loss(z_a, z_b, self.cfg.barlow_lambda, self.cfg.barlow_scale)
