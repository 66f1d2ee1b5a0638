"""SimCLR (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual Representations"):
a joint method whose objective is NT-Xent over the 2N views of a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimax.objectives import nt_xent_loss
from mimax.paradigms import JointMethod, TemperatureOptions
from mimax.paradigms.options import recipe


@dataclass(frozen=True)
class SimCLROptions(TemperatureOptions):
    """SimCLR reads only the NT-Xent temperature."""

    @classmethod
    def presets(cls, dataset: str) -> dict[str, Any]:
        # solo-learn's simclr.yaml (CIFAR) and imagenet-100 simclr.yaml (LR 0.3 x 128/256); CPU protocol
        lars = dict(optimizer="lars", weight_decay=1e-4, temperature=0.2)
        return {**super().presets(dataset), **recipe(
            dataset,
            cifar=dict(lars, initial_lr=0.4, feature_dim=2048, projection_dim=256, projection_layer=2),
            imagenet100=dict(lars, architecture="ResNet50", batch_size=128, initial_lr=0.15, feature_dim=4096,
                             projection_dim=512, projection_layer=2),
            fashion=dict(lars, initial_lr=0.2, feature_dim=512, projection_dim=128, projection_layer=2))}


class SimCLR(JointMethod):
    name = "SimCLR"
    objective_desc = "NT-Xent over the 2N views, temperature tau"
    reference = "Chen et al., 2020, arXiv:2002.05709"
    Options = SimCLROptions

    def objective(self, z_a, z_b):
        return nt_xent_loss(z_a, z_b, self.options.temperature)
