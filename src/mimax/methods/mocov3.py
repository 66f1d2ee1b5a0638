"""MoCo-v3 (Chen, Xie & He, 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
arXiv:2104.02057): self-distillation with an EMA key encoder, an MLP predictor on the query side, and a
2τ-scaled InfoNCE over in-batch keys."""

from __future__ import annotations

from mimax.objectives import moco_v3_loss
from mimax.paradigms import SelfDistillationMethod


class MoCoV3(SelfDistillationMethod):
    name = "MoCoV3"
    target_update = "ema"
    has_predictor = True
    predictor_desc = "MLP D-h-D"
    objective_desc = "2 tau CE(S, diag), S_ij = cos(q(f_θ(x^A_i)), sg(g_ξ(x^B_j)))/tau, both swaps summed"
    reference = "Chen, Xie & He, 2021, arXiv:2104.02057"
    view_recipe = "byol"  # its paper uses BYOL's augmentation
    projector_last_bn = True
    reduction = "sum"  # ctr(q1, k2) + ctr(q2, k1)

    @classmethod
    def preset(cls, dataset: str) -> dict:
        if dataset == "Gaussian":  # docs/methods.md §7: m_0 = 0.9, h = 64; tau from the dataset preset (0.2)
            return {"ema_momentum": 0.9, "predictor_dim": 64}
        # solo-learn's CIFAR MoCo-v3 config: m_0 = 0.99, tau = 0.2, predictor 4096; projector 4096 -> 256
        # with 3 layers as in the paper's ResNet setting
        return {"ema_momentum": 0.99, "predictor_dim": 4096, "temperature": 0.2, "feature_dim": 4096,
                "projection_dim": 256, "projection_layer": 3}

    def objective(self, p, z):
        return moco_v3_loss(p, z, self.cfg.temperature)
