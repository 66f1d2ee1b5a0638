"""JMI paradigm (docs/methods.md §3): one shared encoder f for both views, no stop-gradient, no target, no
predictor; both views receive gradient. A joint method only declares its objective."""

from __future__ import annotations

from torch import Tensor

from mimax.nets import Encoder
from mimax.objectives import LossTerms
from mimax.paradigms.base import Method, build_encoder


class JointMethod(Method):
    paradigm = "joint"
    target_update = "none (shared encoder)"
    projector_last_bn = False

    @classmethod
    def validate(cls, cfg) -> None:
        from mimax.config import ConfigError

        super().validate(cfg)
        for flag in ("target_update", "target_init", "ema_momentum", "predictor_dim"):
            if getattr(cfg, flag) is not None:
                raise ConfigError(f"--{flag}", f"{cls.name} is a joint method: one shared encoder, no target")
        if cfg.predictor:
            raise ConfigError("--predictor", f"{cls.name} is a joint method: no predictor")
        if cfg.alternation_period != 1:
            raise ConfigError("--alternation_period", f"{cls.name} is a joint method: nothing alternates")

    def __init__(self, cfg, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        self.encoder = build_encoder(cfg, input_shape, self.projector_last_bn)

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
