"""JMI prototype (arXiv:2510.01345): one shared encoder maximizing the cosine-critic DV bound
``(I_DV(S) + I_DV(S^T)) / 2`` between the two views' embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimax.objectives import jmi_objective
from mimax.paradigms import JointMethod, TemperatureOptions, option
from mimax.paradigms.options import REFERENCE_RECIPE, recipe


@dataclass(frozen=True)
class JMIOptions(TemperatureOptions):
    no_marginal: bool = option(False, "drop the marginal (negative) term of the DV bound (ablation)",
                               "the paper's ablation (Sabby et al., 2025)")

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        return {**super().presets(dataset), **recipe(dataset, **REFERENCE_RECIPE)}


class JMI(JointMethod):
    name = "JMI"
    objective_desc = "-(I_DV(S) + I_DV(S^T))/2, cosine critic (--no_marginal: joint term only)"
    reference = "Sabby et al., 2025, arXiv:2510.01345"
    Options = JMIOptions

    def objective(self, z_a, z_b):
        return jmi_objective(z_a, z_b, self.options.temperature, marginal=not self.options.no_marginal)
