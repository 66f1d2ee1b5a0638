"""BYOL (Grill et al., 2020, "Bootstrap Your Own Latent", arXiv:2006.07733): self-distillation with an
EMA target and an MLP predictor; the loss keeps only the joint (positive-pair) term."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimax.objectives import byol_loss
from mimax.paradigms import MethodOptions, SelfDistillationMethod, option
from mimax.paradigms.options import check_ema, check_predictor, check_target_init, ema_min_time_constants_option, recipe


@dataclass(frozen=True)
class BYOLOptions(MethodOptions):
    ema_momentum: float = option(0.99, "base EMA momentum m_0, raised to 1 on a cosine over the run",
                                 "solo-learn's CIFAR/ImageNet-100 BYOL configs (the paper: 0.996)")
    ema_min_time_constants: float = ema_min_time_constants_option()
    predictor_dim: int = option(4096, "predictor hidden width h (MLP D-h-D)", "BYOL paper §3.3; solo-learn")
    target_init: str | None = option(None, "g_ξ initialized as a copy of f_θ (auto) or independently",
                                     "BYOL paper")

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        if dataset == "Gaussian":  # the controlled experiment: m_0 = 0.9 (0.99 is too slow for ~1,000 steps)
            return {"ema_momentum": 0.9, "predictor_dim": 64}
        # solo-learn's byol.yaml (CIFAR, ImageNet-100: LR 1.0 x 256/256 and 0.5; predictor 4096 and 8192)
        heads = dict(feature_dim=4096, projection_dim=256, projection_layer=2)
        return recipe(
            dataset,
            cifar=dict(heads, optimizer="lars", initial_lr=1.0, weight_decay=1e-5),
            imagenet100=dict(heads, architecture="ResNet50", optimizer="lars", initial_lr=0.5, weight_decay=1e-6,
                             predictor_dim=8192),
            fashion=dict(optimizer="lars", initial_lr=0.5, weight_decay=1e-5, feature_dim=512, projection_dim=128,
                         projection_layer=2, predictor_dim=512))

    def check(self) -> None:
        check_ema(self)
        check_predictor(self)
        check_target_init(self)


class BYOL(SelfDistillationMethod):
    name = "BYOL"
    rule = "ema"
    target_update_desc = "ema"
    has_predictor = True
    predictor_desc = "MLP D-h-D"
    objective_desc = "2 - 2 cos(q(f_θ(x^A)), sg(g_ξ(x^B))), both swaps summed"
    reference = "Grill et al., 2020, arXiv:2006.07733"
    view_recipe = "byol"  # BYOL's own asymmetric recipe (Table 6)
    reduction = "sum"  # the paper's L + L~
    Options = BYOLOptions

    def objective(self, p, z):
        return byol_loss(p, z)
