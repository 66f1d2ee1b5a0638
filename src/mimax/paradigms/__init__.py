"""The two paradigms of the paper: joint MI (one shared encoder) and self-distillation MI (online vs
target through a stop-gradient). A method is a short declaration on top of one of them, with its own
options (:class:`MethodOptions`)."""

from mimax.paradigms.base import Method
from mimax.paradigms.joint import JointMethod
from mimax.paradigms.options import MethodOptions, TemperatureOptions, ema_min_time_constants_option, option, require
from mimax.paradigms.self_distillation import SelfDistillationMethod

__all__ = ["JointMethod", "Method", "MethodOptions", "SelfDistillationMethod", "TemperatureOptions",
           "ema_min_time_constants_option", "option", "require"]
