"""The two paradigms of the paper: joint MI (one shared encoder) and self-distillation MI (online vs
target through a stop-gradient). A method is a short declaration on top of one of them."""

from mimax.paradigms.base import Method, build_encoder
from mimax.paradigms.joint import JointMethod
from mimax.paradigms.self_distillation import SelfDistillationMethod

__all__ = ["JointMethod", "Method", "SelfDistillationMethod", "build_encoder"]
