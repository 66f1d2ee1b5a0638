"""JMI paradigm (docs/methods.md §3): one shared encoder f for both views, no stop-gradient, no target, no
predictor; both views receive gradient. A joint method only declares its objective."""

from __future__ import annotations

from torch import Tensor

from mimax.nets import Encoder, EncoderSpec, build_encoder
from mimax.objectives import LossTerms
from mimax.paradigms.base import Method
from mimax.paradigms.options import MethodOptions


class JointMethod(Method):
    paradigm = "joint"
    target_update_desc = "none (shared encoder)"
    projector_last_bn = False

    def __init__(self, options: MethodOptions, encoder: EncoderSpec, input_shape: tuple[int, ...]):
        super().__init__(options, encoder, input_shape)
        self.encoder = build_encoder(encoder, input_shape, self.projector_last_bn)

    def objective(self, z_a: Tensor, z_b: Tensor) -> LossTerms:
        """The loss on the two views' embeddings (both carry gradient)."""
        raise NotImplementedError

    def training_loss(self, x_a: Tensor, x_b: Tensor, step: int) -> LossTerms:
        return self.global_objective(self.objective, self.encoder(x_a), self.encoder(x_b))

    def monitor_pairs(self, x_a: Tensor, x_b: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        h_a, h_b = self.encoder.features(x_a), self.encoder.features(x_b)
        return {"embedding": (self.encoder.projector(h_a), self.encoder.projector(h_b)), "backbone": (h_a, h_b)}

    def encoders(self) -> dict[str, Encoder]:
        return {"f": self.encoder}
