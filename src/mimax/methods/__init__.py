"""Method registry: ``--model_name`` -> method class. ``mimax methods`` prints it."""

from __future__ import annotations

from mimax.methods.jmi import JMI
from mimax.methods.simclr import SimCLR
from mimax.paradigms import Method

METHODS: dict[str, type[Method]] = {m.name: m for m in (JMI, SimCLR)}

__all__ = ["METHODS"]
