"""BYOL (Grill et al., 2020, "Bootstrap Your Own Latent", arXiv:2006.07733): self-distillation with an
EMA target and an MLP predictor; the loss keeps only the joint (positive-pair) term."""

from __future__ import annotations

from mimax.objectives import byol_loss
from mimax.paradigms import SelfDistillationMethod


class BYOL(SelfDistillationMethod):
    name = "BYOL"
    target_update = "ema"
    has_predictor = True
    predictor_desc = "MLP D-h-D"
    objective_desc = "2 - 2 cos(q(f_θ(x^A)), sg(g_ξ(x^B))), both swaps summed"
    reference = "Grill et al., 2020, arXiv:2006.07733"
    view_recipe = "byol"  # BYOL's own asymmetric recipe (Table 6)
    reduction = "sum"  # the paper's L + L~

    @classmethod
    def preset(cls, dataset: str) -> dict:
        if dataset == "Gaussian":  # docs/methods.md §7: m_0 = 0.9 (0.99 is too slow for ~1,000 steps), h = 64
            return {"ema_momentum": 0.9, "predictor_dim": 64}
        # solo-learn's CIFAR and ImageNet-100 BYOL configs: m_0 = 0.99, projector 4096 -> 256, predictor 4096
        return {"ema_momentum": 0.99, "predictor_dim": 4096, "feature_dim": 4096, "projection_dim": 256,
                "projection_layer": 2}

    def objective(self, p, z):
        return byol_loss(p, z)
