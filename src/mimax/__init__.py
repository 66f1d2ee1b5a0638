"""mimax: self-supervised representation learning as mutual-information maximization.

Two paradigms (arXiv:2510.01345): self-distillation MI (SDMI: online f_theta vs target g_xi through a
stop-gradient) and joint MI (JMI: one shared encoder), the bounds they optimize (DV, InfoNCE, JSD) as
pure functions of a score matrix, and eight methods declared on top of them.
"""

import importlib

__version__ = "0.1.0"


_LAZY = {"estimate_mi": "mimax.monitors.estimators", "monitor_values": "mimax.monitors.api", "bounds": "mimax.bounds"}


def __getattr__(name: str):
    """The public API, resolved on first use (PEP 562): ``import mimax`` stays light (the CLI starts fast)
    and the package root depends on no layer of the package."""
    if name not in _LAZY:
        raise AttributeError(f"module 'mimax' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return module if name == "bounds" else getattr(module, name)


__all__ = ["__version__", "bounds", "estimate_mi", "monitor_values"]
