"""SDMI prototype (Sabby et al., 2025, arXiv:2510.01345): two full encoders f_θ and g_ξ trained in
alternation, each against a stop-gradient copy of the other, on the cosine-critic DV bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimax.objectives import dv_objective
from mimax.paradigms import SelfDistillationMethod, TemperatureOptions, option
from mimax.paradigms.options import (
    REFERENCE_RECIPE,
    check_ema,
    check_predictor,
    check_target_init,
    ema_min_time_constants_option,
    recipe,
    require,
)

OURS = "ours: the prototype's predictor/EMA are ablation options with no published setting"


@dataclass(frozen=True)
class SDMIOptions(TemperatureOptions):
    no_marginal: bool = option(False, "drop the marginal (negative) term of the DV bound (ablation)",
                               "the paper's ablation (Sabby et al., 2025)")
    target_update: str = option("alternate", "how g_ξ follows f_θ: alternate (own gradient steps), ema or copy",
                                "the paper's SDMI (Sabby et al., 2025)")
    target_init: str | None = option(None, "g_ξ initialized independently of f_θ or as a copy (auto: independent "
                                           "for alternate, copy for ema)", "the paper's SDMI; BYOL for ema")
    alternation_period: int = option(1, "steps each side takes before switching θ <-> ξ (alternate)",
                                     "the paper's SDMI")
    predictor: bool = option(False, "add an MLP predictor q on the online side, S_ij = cos(q(u_i), v_j)/tau",
                             "ablation option")
    ema_momentum: float = option(0.99, "base EMA momentum m_0 (with --target_update ema)", OURS)
    ema_min_time_constants: float = ema_min_time_constants_option()
    predictor_dim: int = option(512, "predictor hidden width (with --predictor)", OURS)
    projector_bn: bool = option(False, "end the projectors of f_θ and g_ξ in BatchNorm, which centers each "
                                       "embedding dimension over the batch (as MoCo-v3's and SimSiam's do)",
                                "ours: the paper's projector has none; see docs/methods.md, SDMI at short budgets")

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        if dataset == "Gaussian":  # the paper's controlled experiment: m_0 = 0.9, predictor h = 64
            return {**super().presets(dataset), "ema_momentum": 0.9, "predictor_dim": 64}
        return recipe(dataset, **REFERENCE_RECIPE)

    def unread(self) -> dict[str, str]:
        unread = {}
        if self.target_update != "ema":
            unread["ema_momentum"] = "without --target_update ema"
            unread["ema_min_time_constants"] = "without --target_update ema"
        if not self.predictor:
            unread["predictor_dim"] = "without --predictor"
        if self.target_update != "alternate":
            unread["alternation_period"] = f"with --target_update {self.target_update} (only alternate alternates)"
        if self.target_update == "copy":
            unread["target_init"] = "with --target_update copy (the target is the online encoder itself)"
        return unread

    def check(self) -> None:
        super().check()
        require(self.target_update in ("alternate", "ema", "copy"), "target_update",
                f"expected alternate, ema or copy (got {self.target_update!r})")
        check_target_init(self)
        require(self.alternation_period >= 1, "alternation_period", f"must be >= 1 (got {self.alternation_period})")
        check_ema(self)
        check_predictor(self)


class SDMI(SelfDistillationMethod):
    name = "SDMI"
    rule = "alternate"
    target_update_desc = "alternate (option: ema, copy)"
    predictor_desc = "none (option: --predictor, MLP)"
    objective_desc = "-I_DV(S), S_ij = cos(f_θ(x^A_i), sg(g_ξ(x^B_j)))/tau and the ξ-side mirror, symmetrized"
    reference = "Sabby et al., 2025, arXiv:2510.01345"
    Options = SDMIOptions

    def objective(self, p, z):
        """One direction of the view swap: ``-I_DV(S)``, ``S_ij = cos(p_i, z_j) / tau`` (``--no_marginal``:
        the joint term only). The two directions are averaged, so the loss reads in nats."""
        return dv_objective(p, z, self.options.temperature, marginal=not self.options.no_marginal)
