"""mimax: self-supervised representation learning as mutual-information maximization.

Two paradigms (arXiv:2510.01345): self-distillation MI (SDMI: online f_theta vs target g_xi through a
stop-gradient) and joint MI (JMI: one shared encoder), the bounds they optimize (DV, InfoNCE, JSD) as
pure functions of a score matrix, and eight methods declared on top of them.
"""

__version__ = "0.1.0"
