"""The contract between a method and the engine.

The engine never branches on a method's name. It asks a method for
- ``optimizer_groups()``: named optimizers, each with parameter groups (SDMI's two encoders get two);
- ``active_optimizer(step)``: which optimizer steps at a global step (alternation lives here);
- ``training_loss(x_a, x_b, step)``: named loss terms, ``"loss"`` being minimized;
- ``after_step(step, total_steps)``: state updated after the optimizer step (EMA targets);
- ``notes(total_steps)``: lines printed before training (a schedule fitted to the run's length);
- ``encoders()``: the encoders to evaluate, by label (SDMI returns f_theta and g_xi);
- ``monitor_pairs(x_a, x_b)``: the embedding pairs whose MI the monitors estimate;
- ``forward(x_a, x_b, step)`` is ``training_loss``: the engine calls the method (or its DDP wrapper) so
  that DistributedDataParallel sees the whole step;
- a paradigm calls its objective through ``global_objective``, so that in a multi-process run the
  objective sees every rank's pairs (negatives, batch statistics) with gradients, and always in fp32;
and saves ``state_dict()`` in checkpoints, so every module a method owns is checkpointed.

A method is built from its own options (``Options``, a frozen :class:`MethodOptions` dataclass), the
encoder's :class:`~mimax.nets.EncoderSpec` and the input shape, never from the whole configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchvision.models import VisionTransformer

from mimax.errors import MethodError
from mimax.nets import Encoder, EncoderSpec
from mimax.objectives import LossTerms
from mimax.paradigms.options import MethodOptions
from mimax.runtime.distributed import gather_batch

ParamGroup = dict[str, Any]


def param_groups(module: nn.Module, **options: Any) -> list[ParamGroup]:
    """Split a module's parameters into weights, biases/norm parameters (``ndim <= 1``) and the tokens a
    transformer must not decay.

    The second and third groups are marked ``exclude_from_lars`` so that LARS applies neither weight decay nor
    the trust ratio to them (You et al., 2017; as in SimCLR and BYOL). The third group, a ViT's position
    embedding and class token (what a timm submodule lists in its ``no_weight_decay()``, and torchvision's
    ``VisionTransformer``'s ``class_token`` and ``encoder.pos_embedding``), gets no weight decay under any
    optimizer, as timm's optimizer factory does. Extra ``options`` go on every group.
    """
    no_decay = _no_weight_decay(module)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if p.ndim > 1 and n not in no_decay], "exclude_from_lars": False},
              {"params": [p for n, p in named if p.ndim <= 1 and n not in no_decay], "exclude_from_lars": True},
              {"params": [p for n, p in named if n in no_decay], "exclude_from_lars": True, "weight_decay": 0.0}]
    return [{**g, **options} for g in groups if g["params"]]


def _no_weight_decay(module: nn.Module) -> set[str]:
    """Full names of the parameters excluded from weight decay: those submodules list via timm's
    ``no_weight_decay()`` convention, and a torchvision ViT's class token and position embedding."""
    names: set[str] = set()
    for prefix, sub in module.named_modules():
        own = set()
        hook = getattr(sub, "no_weight_decay", None)
        if callable(hook):
            own |= set(hook())
        if isinstance(sub, VisionTransformer):
            own |= {"class_token", "encoder.pos_embedding"}
        names |= {f"{prefix}.{n}" if prefix else n for n in own}
    return names


# columns of metrics.csv the loop writes beside the loss terms: a term of the same name would overwrite them
RESERVED_TERMS = frozenset({"epoch", "step", "lr", "skipped_steps", "epoch_time_s", "images_per_s",
                            "gpu_mem_peak_gb"})


def check_loss_terms(terms: Any, objective: Callable[..., Any], needs_grad: bool) -> None:
    """What an objective returns: a dict of 0-d tensors, one of them the ``"loss"`` to minimize (with a gradient
    when its inputs have one). A user method's mistake is one line naming its objective (a MethodError), not
    a KeyError or autograd traceback from the training loop; for mimax's own objectives a few dict and
    attribute reads per step."""
    def refuse(what: str) -> MethodError:
        name = getattr(objective, "__qualname__", repr(objective))
        return MethodError(f"{name} returned {what}; an objective returns a dict of 0-d tensors with the 'loss' "
                           "to minimize (docs/extending.md)")

    if not isinstance(terms, dict):
        raise refuse(f"a {type(terms).__name__}")
    if "loss" not in terms:
        raise refuse(f"a dict with keys {sorted(map(str, terms))}")
    if not RESERVED_TERMS.isdisjoint(terms):
        raise refuse(f"a term named {sorted(RESERVED_TERMS.intersection(terms))[0]!r}, a column metrics.csv "
                     f"writes itself ({', '.join(sorted(RESERVED_TERMS))}): rename it")
    for key, value in terms.items():
        if not isinstance(value, Tensor) or value.ndim != 0:
            raise refuse(f"{key!r} of shape {tuple(value.shape)}" if isinstance(value, Tensor)
                         else f"{key!r} as a {type(value).__name__}")
    if needs_grad and not terms["loss"].requires_grad:
        raise refuse("a 'loss' without a gradient (it does not depend on the embeddings it was given: computed "
                     "from constants, or detached)")


class Method(nn.Module):
    """Base class of all methods. Subclass a paradigm (:class:`JointMethod` or the self-distillation
    paradigm), not this class directly."""

    name: ClassVar[str]  # --model_name of a built-in method; a user method's class name unless it sets one
    paradigm: ClassVar[str]  # "joint" or "self-distillation"
    target_update_desc: ClassVar[str] = "none"  # for `mimax methods`; the rule itself is the paradigm's
    predictor_desc: ClassVar[str] = "none"
    objective_desc: ClassVar[str] = ""  # one line for `mimax methods` (default: the objective's docstring)
    reference: ClassVar[str] = ""
    view_recipe: ClassVar[str] = "simclr"  # augmentation family with --augmentation (docs/data.md)
    Options: ClassVar[type[MethodOptions]] = MethodOptions  # the hyperparameters the method reads

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        undescribed = cls.target_update_desc == "none" or getattr(cls, "_target_update_desc_from_rule", False)
        if "target_update_desc" not in cls.__dict__ and undescribed and isinstance(getattr(cls, "rule", None), str):
            cls.target_update_desc = cls.rule  # a self-distillation method's rule, unless it describes it
            cls._target_update_desc_from_rule = True
        # `mimax methods`: the objective's docstring unless the class describes it (a paradigm's docstring is
        # not its subclass's), and a declared predictor
        if "objective_desc" not in cls.__dict__ and "objective" in cls.__dict__ and (
                not cls.objective_desc or getattr(cls, "_objective_desc_from_doc", False)):
            doc = (cls.__dict__["objective"].__doc__ or "").strip()
            cls.objective_desc = doc.splitlines()[0] if doc else ""
            cls._objective_desc_from_doc = True
        declared = getattr(cls, "has_predictor", False)
        if "predictor_desc" not in cls.__dict__ and cls.predictor_desc == "none" and declared:
            cls.predictor_desc = "MLP D-h-D (predictor_dim)"

    def __init__(self, options: MethodOptions, encoder: EncoderSpec, input_shape: tuple[int, ...]):
        super().__init__()
        if not isinstance(options, self.Options):
            raise TypeError(f"{self.name} takes {self.Options.__name__}, got {type(options).__name__}")
        self.options = options

    @classmethod
    def check_options(cls, options: MethodOptions) -> None:
        """Raise :class:`ConfigError` for option values the paradigm cannot train with (after the options' own
        :meth:`~MethodOptions.validate`, before anything is created); nothing to check by default."""

    def optimizer_groups(self) -> dict[str, list[ParamGroup]]:
        return {"main": param_groups(self)}

    def active_optimizer(self, step: int) -> str:
        return "main"

    def training_loss(self, x_a: Tensor, x_b: Tensor, step: int) -> LossTerms:
        raise NotImplementedError

    def forward(self, x_a: Tensor, x_b: Tensor, step: int) -> LossTerms:
        """The training step's loss terms; the engine calls ``method(x_a, x_b, step)`` (DDP-wrappable)."""
        return self.training_loss(x_a, x_b, step)

    @staticmethod
    def global_objective(objective: Callable[..., LossTerms], *embeddings: Tensor) -> LossTerms:
        """``objective(*embeddings)`` on the global batch, in fp32. Every paradigm calls its objective
        through here.

        - Each ``(n, D)`` embedding is gathered over all ranks to ``(n * W, D)`` with an autograd-aware
          all-gather (:func:`mimax.runtime.distributed.gather_batch`), so negatives and batch statistics
          span the global batch and gradients flow back to every rank; unchanged in a single process.
        - Autocast is switched off and the embeddings are cast to fp32: under autocast a matmul inside
          the objective would otherwise run in bf16/fp16 even on fp32 inputs.
        """
        with torch.autocast(embeddings[0].device.type, enabled=False):
            terms = objective(*(gather_batch(z).float() for z in embeddings))
        check_loss_terms(terms, objective, needs_grad=torch.is_grad_enabled() and
                         any(z.requires_grad for z in embeddings))
        return terms

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimizer step; EMA targets update here."""

    def notes(self, total_steps: int) -> list[str]:
        """Lines printed before training: what the method fitted to a run of ``total_steps`` steps."""
        return []

    def encoders(self) -> dict[str, Encoder]:
        raise NotImplementedError

    def monitor_pairs(self, x_a: Tensor, x_b: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """The embedding pairs whose MI the monitors estimate (docs/methods.md §6), by representation name:
        ``"embedding"`` = the projector outputs of the two branches the method pairs, ``"backbone"`` =
        backbone features paired within one network. Called in eval mode under ``no_grad``."""
        raise NotImplementedError

    def row_labels(self) -> dict[str, str]:
        """Results-table row label per encoder: ``"SimCLR"``, or ``"SDMI (f_θ)"`` for several."""
        enc = self.encoders()
        if len(enc) == 1:
            return {k: self.name for k in enc}
        return {k: f"{self.name} ({k})" for k in enc}
