"""Method registry: ``--model_name`` -> method class (built in, an entry point of the ``mimax.methods``
group, or an import path ``module:Class`` / ``file.py:Class``; :mod:`mimax.methods.registry`).
``mimax methods`` prints it.

:func:`build_method` is how every caller constructs a method: from the method's own options (read from
a resolved config), the encoder spec and the input shape.
"""

from __future__ import annotations

from typing import Any

from mimax.methods.barlow_twins import BarlowTwins
from mimax.methods.byol import BYOL
from mimax.methods.jmi import JMI
from mimax.methods.mocov3 import MoCoV3
from mimax.methods.registry import MethodNotFound, MethodRegistry
from mimax.methods.sdmi import SDMI
from mimax.methods.simclr import SimCLR
from mimax.methods.simsiam import SimSiam
from mimax.methods.vicreg import VICReg
from mimax.nets import EncoderSpec
from mimax.paradigms import Method

METHODS: MethodRegistry = MethodRegistry({m.name: m for m in (SDMI, JMI, SimCLR, BYOL, SimSiam, MoCoV3,
                                                             BarlowTwins, VICReg)})


def option_names() -> frozenset[str]:
    """Every option some registered method reads: such a flag, given for a method that does not read
    it, is refused (or only warned about, for the reference repository's flags)."""
    return frozenset(n for m in METHODS.values() for n in m.Options.names())


def build_method(cfg: Any, input_shape: tuple[int, ...]) -> Method:
    """The method ``cfg.model_name`` built from its options and encoder spec (``cfg`` resolved)."""
    cls = METHODS[cfg.model_name]
    return cls(cls.Options.from_config(cfg), EncoderSpec.from_config(cfg), tuple(input_shape))


__all__ = ["METHODS", "Method", "MethodNotFound", "build_method", "option_names"]
