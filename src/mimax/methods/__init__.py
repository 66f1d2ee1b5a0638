"""Method registry: ``--model_name`` -> method class (built in, an entry point of the ``mimax.methods``
group, or an import path ``module:Class`` / ``file.py:Class``; :mod:`mimax.methods.registry`).
``mimax methods`` prints it."""

from __future__ import annotations

from mimax.methods.barlow_twins import BarlowTwins
from mimax.methods.byol import BYOL
from mimax.methods.jmi import JMI
from mimax.methods.mocov3 import MoCoV3
from mimax.methods.registry import MethodNotFound, MethodRegistry
from mimax.methods.sdmi import SDMI
from mimax.methods.simclr import SimCLR
from mimax.methods.simsiam import SimSiam
from mimax.methods.vicreg import VICReg
from mimax.paradigms import Method

METHODS: MethodRegistry = MethodRegistry({m.name: m for m in (SDMI, JMI, SimCLR, BYOL, SimSiam, MoCoV3,
                                                             BarlowTwins, VICReg)})

__all__ = ["METHODS", "Method", "MethodNotFound"]
