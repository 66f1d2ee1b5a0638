"""mimax: self-supervised representation learning as mutual-information maximization.

Two paradigms (arXiv:2510.01345): self-distillation MI (SDMI: online f_theta vs target g_xi through a
stop-gradient) and joint MI (JMI: one shared encoder), the bounds they optimize (DV, InfoNCE, JSD) as
pure functions of a score matrix, and eight methods declared on top of them.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy public API (keeps ``import mimax`` and the CLI's start-up light)."""
    if name == "estimate_mi":
        from mimax.monitors.estimators import estimate_mi

        return estimate_mi
    if name == "monitor_values":
        from mimax.monitors.api import monitor_values

        return monitor_values
    if name == "bounds":
        import mimax.bounds as bounds

        return bounds
    raise AttributeError(f"module 'mimax' has no attribute {name!r}")


__all__ = ["__version__", "estimate_mi", "monitor_values"]
