"""mimax: self-supervised representation learning as mutual-information maximization.

Two paradigms (arXiv:2510.01345): self-distillation MI (SDMI: online f_theta vs target g_xi through a
stop-gradient) and joint MI (JMI: one shared encoder), the bounds they optimize (DV, InfoNCE, JSD) as
pure functions of a score matrix, and eight methods declared on top of them.

The public API (docs/api.md) is imported on first use, so that ``import mimax`` and the CLI stay fast:
``mimax.Config``, ``mimax.train``, ``mimax.JointMethod``, ``mimax.SelfDistillationMethod``,
``mimax.TwoViewTransform``, and the modules ``mimax.bounds``, ``mimax.objectives``, ``mimax.monitors``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Config": "mimax.config",
    "train": "mimax.api",
    "TwoViewTransform": "mimax.data.views",
    "JointMethod": "mimax.paradigms",
    "SelfDistillationMethod": "mimax.paradigms",
    "Method": "mimax.paradigms",
    "estimate_mi": "mimax.monitors.estimators",
    "monitor_values": "mimax.monitors.api",
}
__all__ = ["__version__", *_PUBLIC]  # and the modules bounds, objectives, monitors, paradigms, methods, nets


_MODULES = ("bounds", "objectives", "monitors", "paradigms", "methods", "nets")


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"mimax.{name}")
    raise AttributeError(f"module 'mimax' has no attribute {name!r}")
