"""SDMI paradigm (docs/methods.md §3): an online encoder f_θ against a target g_ξ through a stop-gradient.

Each step optimizes one side against a detached copy of the other (block-coordinate ascent on the
bound). The θ-step is the same for every method: maximize ``J(q(f_θ(x^A)), sg(g_ξ(x^B)))``, symmetrized
over the view swap, ``q`` an optional predictor. The ξ-step is the target-update rule:

- ``alternate`` (SDMI prototype): g_ξ is a second, independent encoder with its own optimizer
  (``"target"``); the ξ-step is a gradient step on ``J(sg(q(f_θ(x^A))), g_ξ(x^B))``. Steps alternate
  θ, ξ, θ, ... with period ``--alternation_period``.
- ``ema`` (BYOL, MoCo-v3): ``ξ <- m ξ + (1 - m) θ`` after every θ-step, ``m`` raised from ``m_0`` to 1 on
  a cosine; g_ξ has no optimizer. A run too short for the method's ``m_0`` lowers it (:func:`ema_base`) so
  that the target still spans ``--ema_min_time_constants`` of its time constants (docs/methods.md §3).
- ``copy`` (SimSiam): g_ξ is f_θ itself; the target embedding is the online output detached.

The side that is not updated runs under ``torch.no_grad()``, so a step costs one backward pass. A method
declares its objective ``J`` (a loss on (online prediction, target embedding)), its rule, whether it has
a predictor, and how the two directions of the view swap combine (mean or sum).
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from mimax.errors import ConfigError
from mimax.nets import Encoder, EncoderSpec, build_encoder, mlp_head
from mimax.objectives import LossTerms
from mimax.paradigms.base import Method, ParamGroup, param_groups
from mimax.paradigms.options import EMA_FLOOR, EMA_MIN_TIME_CONSTANTS, MethodOptions, check_ema, require

TARGET_RULES = ("alternate", "ema", "copy")  # the ξ-steps a method's rule (or its target_update option) names


def ema_momentum(step: int, total_steps: int, base: float) -> float:
    """Cosine EMA schedule (BYOL, Grill et al., 2020, §3.2): ``m_k = 1 - (1 - m_0)(cos(pi k / K) + 1) / 2``,
    from ``m_0`` at ``k = 0`` up to 1 at ``k = K``."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / max(1, total_steps)) + 1.0) / 2.0


def ema_time_constants(base: float, total_steps: int) -> float:
    """How many of its time constants the target travels in a run of ``K`` steps under :func:`ema_momentum`:
    ``N = sum_{k=0}^{K-1} (1 - m_k) = (1 - m_0)(K + 1) / 2`` (the cosines of ``k`` and ``K - k`` cancel,
    leaving ``cos 0 = 1``). The initial target's weight left in ξ is ``prod_k m_k ≈ exp(-N)``."""
    return (1.0 - base) * (max(1, total_steps) + 1) / 2.0


def ema_base(base: float, total_steps: int, min_time_constants: float) -> float:
    """The base momentum a run of ``K`` steps uses: ``m_0`` itself when the run spans at least ``N_min``
    time constants (:func:`ema_time_constants`), else the ``m_0`` that spans exactly ``N_min``,
    ``1 - 2 N_min / (K + 1)``, but never below :data:`EMA_FLOOR` (nor above the given ``m_0``):
    ``min(m_0, max(EMA_FLOOR, 1 - 2 N_min / (K + 1)))``. ``N_min = 0`` keeps ``m_0`` (docs/methods.md §3)."""
    if min_time_constants <= 0 or ema_time_constants(base, total_steps) >= min_time_constants:
        return base
    return min(base, max(EMA_FLOOR, 1.0 - 2.0 * min_time_constants / (max(1, total_steps) + 1)))


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``ξ <- m ξ + (1 - m) θ`` for every parameter, as one fused ``lerp`` over the parameter list
    (``ξ + (1 - m)(θ - ξ)``). Buffers (BatchNorm statistics) stay the target's own, as in BYOL."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - momentum)


class SelfDistillationMethod(Method):
    paradigm = "self-distillation"
    rule: ClassVar[str] = "ema"  # the ξ-step: alternate, ema or copy (SDMI makes it an option)
    has_predictor: ClassVar[bool] = False
    projector_last_bn: ClassVar[bool] = False
    reduction: ClassVar[str] = "mean"  # how the two directions of the view swap combine: "mean" or "sum"
    predictor_fixed_lr: ClassVar[bool] = False  # SimSiam: the predictor keeps its base LR (no schedule)

    def __init__(self, options: MethodOptions, encoder: EncoderSpec, input_shape: tuple[int, ...]):
        super().__init__(options, encoder, input_shape)
        # options a method may declare: target_update, predictor and projector_bn (SDMI), alternation_period,
        # target_init, ema_momentum and ema_min_time_constants (EMA targets), predictor_dim (methods with a predictor)
        self.rule = self.rule_of(options)
        self.period = getattr(options, "alternation_period", 1)
        # a method's projector ends in BatchNorm by declaration (MoCo-v3, SimSiam) or by option (SDMI's projector_bn)
        last_bn = getattr(options, "projector_bn", self.projector_last_bn)
        self.online = build_encoder(encoder, input_shape, last_bn)
        uses_predictor = getattr(options, "predictor", self.has_predictor)
        self.predictor = (mlp_head(encoder.projection_dim, options.predictor_dim, encoder.projection_dim, 2)
                          if uses_predictor else None)
        self.target: Encoder | None = None
        if self.rule in ("alternate", "ema"):
            # default: the paper's two independent encoders for alternate; BYOL's/MoCo-v3's copy for ema
            init = getattr(options, "target_init", None) or ("independent" if self.rule == "alternate" else "copy")
            self.target = (copy.deepcopy(self.online) if init == "copy"
                           else build_encoder(encoder, input_shape, last_bn))
        if self.rule == "ema":
            self.target.requires_grad_(False)  # moved by after_step, never by an optimizer

    @classmethod
    def rule_of(cls, options: MethodOptions) -> str:
        """The ξ-step these options choose: their ``target_update`` where the method declares one, else ``rule``."""
        return getattr(options, "target_update", None) or cls.rule

    @classmethod
    def check_options(cls, options: MethodOptions) -> None:
        """A ``target_update`` option names a rule (a user method may declare one, as SDMI does), and the EMA rule
        has its momentum: an ``ema_momentum`` option in [0, 1), and ``ema_min_time_constants`` >= 0."""
        if "target_update" in options.names():
            require(options.target_update in (None, *TARGET_RULES), "target_update",
                    f"expected {', '.join(TARGET_RULES[:-1])} or {TARGET_RULES[-1]} (got {options.target_update!r})")
        if cls.rule_of(options) != "ema":
            return
        if "ema_momentum" not in options.names():
            raise ConfigError("--target_update", f"ema needs the option ema_momentum, which {cls.name}'s Options do "
                                                 "not declare: add ema_momentum: float = option(0.99, ...) as BYOL "
                                                 "does, or choose alternate or copy (docs/extending.md)")
        check_ema(options)

    # --- what a method declares -----------------------------------------------------------------
    def objective(self, p: Tensor, z: Tensor) -> LossTerms:
        """The loss of one direction: ``p`` the online prediction, ``z`` the target embedding."""
        raise NotImplementedError

    # --- the paradigm ---------------------------------------------------------------------------
    @property
    def target_encoder(self) -> Encoder:
        """g_ξ: a separate encoder (``alternate``, ``ema``) or f_θ itself (``copy``)."""
        return self.online if self.target is None else self.target

    def optimizer_groups(self) -> dict[str, list[ParamGroup]]:
        online = param_groups(self.online)
        if self.predictor is not None:
            online += param_groups(self.predictor, fixed_lr=self.predictor_fixed_lr)
        groups = {"online": online}
        if self.rule == "alternate":
            groups["target"] = param_groups(self.target)
        return groups

    def active_optimizer(self, step: int) -> str:
        if self.rule == "alternate" and (step // self.period) % 2 == 1:
            return "target"
        return "online"

    def predict(self, z: Tensor) -> Tensor:
        return z if self.predictor is None else self.predictor(z)

    def _combine(self, ab: LossTerms, ba: LossTerms) -> LossTerms:
        scale = 1.0 if self.reduction == "sum" else 0.5
        return {k: scale * (ab[k] + ba[k]) for k in ab}

    def training_loss(self, x_a: Tensor, x_b: Tensor, step: int) -> LossTerms:
        if self.active_optimizer(step) == "target":  # ξ-step: f_θ (and q) frozen, no autograd
            with torch.no_grad():
                p_a, p_b = self.predict(self.online(x_a)), self.predict(self.online(x_b))
            z_a, z_b = self.target(x_a), self.target(x_b)
            return self._combine(self.global_objective(self.objective, p_a, z_b),
                                 self.global_objective(self.objective, p_b, z_a))
        z_a, z_b = self.online(x_a), self.online(x_b)  # θ-step
        p_a, p_b = self.predict(z_a), self.predict(z_b)
        if self.target is None:  # copy: the target is f_θ's own output, detached
            t_a, t_b = z_a.detach(), z_b.detach()
        else:
            with torch.no_grad():
                t_a, t_b = self.target(x_a), self.target(x_b)
        return self._combine(self.global_objective(self.objective, p_a, t_b),
                             self.global_objective(self.objective, p_b, t_a))

    def ema_base(self, total_steps: int) -> float:
        """The base momentum of this run's EMA schedule (:func:`ema_base` of the method's options)."""
        return ema_base(self.options.ema_momentum, total_steps, self.ema_min_time_constants)

    @property
    def ema_min_time_constants(self) -> float:
        """The method's ``--ema_min_time_constants``; the default rule for a method whose options do not declare it
        (the flag is then refused for it: :meth:`notes` says how to declare it)."""
        return getattr(self.options, "ema_min_time_constants", EMA_MIN_TIME_CONSTANTS)

    def after_step(self, step: int, total_steps: int) -> None:
        if self.rule == "ema":
            ema_update(self.target, self.online, ema_momentum(step, total_steps, self.ema_base(total_steps)))

    def notes(self, total_steps: int) -> list[str]:
        if self.rule != "ema":
            return []
        base, given = self.ema_base(total_steps), self.options.ema_momentum
        spans = ema_time_constants(base, total_steps)
        if base == given:
            return [f"EMA target: m_0 = {given:g}, {spans:.4g} time constants over the {total_steps} steps"]
        return [f"EMA target: m_0 = {base:.4g} (--ema_momentum {given:g} lowered so that the target spans "
                f"{spans:.3g} of its time constants over the run's {total_steps} steps, --ema_min_time_constants "
                f"{self.ema_min_time_constants:g}; {self._keep_momentum_advice(given)})"]

    def _keep_momentum_advice(self, given: float) -> str:
        """How to keep the given ``m_0``: the flag, for a method whose options declare ``ema_min_time_constants``;
        else the declaration that makes it a flag (the paradigm applies the default rule without one)."""
        if "ema_min_time_constants" in self.options.names():
            return f"give --ema_min_time_constants 0 to keep {given:g}"
        return (f"{self.name}'s Options do not declare it, so the default applies: add ema_min_time_constants: float "
                "= ema_min_time_constants_option() (from mimax.paradigms) to make it a flag, then give "
                f"--ema_min_time_constants 0 to keep {given:g}")

    def encoders(self) -> dict[str, Encoder]:
        if self.rule == "alternate":
            return {"f_θ": self.online, "g_ξ": self.target}
        return {"f_θ": self.online}

    def monitor_pairs(self, x_a: Tensor, x_b: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """``embedding``: q(f_θ(x^A)) (f_θ(x^A) without predictor) vs g_ξ(x^B), the pair the objective
        scores; ``backbone``: f_θ's features of the two views; ``backbone_g``: g_ξ's, for ``alternate``."""
        h_a, h_b = self.online.features(x_a), self.online.features(x_b)
        target = self.target_encoder
        g_b = target.features(x_b) if target is not self.online else h_b  # each backbone runs once per view
        pairs = {"embedding": (self.predict(self.online.projector(h_a)), target.projector(g_b)),
                 "backbone": (h_a, h_b)}
        if self.rule == "alternate":
            pairs["backbone_g"] = (self.target.features(x_a), g_b)
        return pairs
