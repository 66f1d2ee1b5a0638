"""MoCo-v3 (Chen, Xie & He, 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
arXiv:2104.02057): self-distillation with an EMA key encoder, an MLP predictor on the query side, and a
2τ-scaled InfoNCE over in-batch keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimax.objectives import moco_v3_loss
from mimax.paradigms import SelfDistillationMethod, TemperatureOptions, option
from mimax.paradigms.options import check_ema, check_predictor, check_target_init, ema_min_time_constants_option, recipe


@dataclass(frozen=True)
class MoCoV3Options(TemperatureOptions):
    temperature: float = option(0.2, "InfoNCE temperature tau", "solo-learn's CIFAR MoCo-v3 config")
    ema_momentum: float = option(0.99, "base EMA momentum m_0, raised to 1 on a cosine over the run",
                                 "solo-learn's CIFAR MoCo-v3 config")
    ema_min_time_constants: float = ema_min_time_constants_option()
    predictor_dim: int = option(4096, "predictor hidden width h (MLP D-h-D)", "MoCo-v3 paper; solo-learn")
    target_init: str | None = option(None, "g_ξ initialized as a copy of f_θ (auto) or independently",
                                     "MoCo-v3 paper")

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        if dataset == "Gaussian":  # the controlled experiment: m_0 = 0.9, h = 64, tau = 0.2
            return {"temperature": 0.2, "ema_momentum": 0.9, "predictor_dim": 64}
        # solo-learn's mocov3.yaml (CIFAR, ImageNet-100). The projector has 2 layers: solo-learn builds 2 for
        # ResNet backbones and 3 for ViTs, as does the official MoCo-v3 code (3 layers is its ViT setting).
        lars = dict(optimizer="lars", initial_lr=0.3, weight_decay=1e-6, feature_dim=4096, projection_dim=256,
                    projection_layer=2)
        return recipe(
            dataset, cifar=lars, imagenet100=dict(lars, architecture="ResNet50"),
            fashion=dict(lars, initial_lr=0.15, feature_dim=512, projection_dim=128, predictor_dim=512))

    def check(self) -> None:
        super().check()
        check_ema(self)
        check_predictor(self)
        check_target_init(self)


class MoCoV3(SelfDistillationMethod):
    name = "MoCoV3"
    rule = "ema"
    target_update_desc = "ema"
    has_predictor = True
    predictor_desc = "MLP D-h-D"
    objective_desc = "2 tau CE(S, diag), S_ij = cos(q(f_θ(x^A_i)), sg(g_ξ(x^B_j)))/tau, both swaps summed"
    reference = "Chen, Xie & He, 2021, arXiv:2104.02057"
    view_recipe = "byol"  # its paper uses BYOL's augmentation
    projector_last_bn = True
    reduction = "sum"  # ctr(q1, k2) + ctr(q2, k1)
    Options = MoCoV3Options

    def objective(self, p, z):
        return moco_v3_loss(p, z, self.options.temperature)
