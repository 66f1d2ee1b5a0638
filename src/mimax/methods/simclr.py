"""SimCLR (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual Representations"):
a joint method whose objective is NT-Xent over the 2N views of a batch."""

from __future__ import annotations

from dataclasses import dataclass

from mimax.objectives import nt_xent_loss
from mimax.paradigms import JointMethod, TemperatureOptions


@dataclass(frozen=True)
class SimCLROptions(TemperatureOptions):
    """SimCLR reads only the NT-Xent temperature."""


class SimCLR(JointMethod):
    name = "SimCLR"
    objective_desc = "NT-Xent over the 2N views, temperature tau"
    reference = "Chen et al., 2020, arXiv:2002.05709"
    Options = SimCLROptions

    def objective(self, z_a, z_b):
        return nt_xent_loss(z_a, z_b, self.options.temperature)
