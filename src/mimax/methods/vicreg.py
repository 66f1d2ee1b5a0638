"""VICReg (Bardes, Ponce & LeCun, 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", arXiv:2105.04906): a joint method whose marginal term is realized by the
variance and covariance regularizers."""

from __future__ import annotations

from mimax.objectives import vicreg_loss
from mimax.paradigms import JointMethod


class VICReg(JointMethod):
    name = "VICReg"
    objective_desc = "25 MSE + 25 (v(z_a) + v(z_b))/2 + 1 (c(z_a) + c(z_b)), official per-view reduction"
    reference = "Bardes, Ponce & LeCun, 2022, arXiv:2105.04906"
    view_recipe = "byol"  # its paper uses BYOL's augmentation

    @classmethod
    def preset(cls, dataset: str) -> dict:
        if dataset == "Gaussian":  # coefficients 25/25/1 are the flags' defaults (the paper's)
            return {}
        # solo-learn's CIFAR VICReg config: projector 2048 -> 2048 (3 layers)
        return {"feature_dim": 2048, "projection_dim": 2048, "projection_layer": 3}

    def objective(self, z_a, z_b):
        c = self.cfg
        return vicreg_loss(z_a, z_b, c.vicreg_sim_coeff, c.vicreg_std_coeff, c.vicreg_cov_coeff)
