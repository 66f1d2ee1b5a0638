"""Networks: backbones (MLP, torchvision ResNets) and MLP heads (projector, predictor)."""

from mimax.nets.backbones import build_backbone
from mimax.nets.heads import Encoder, mlp_head

__all__ = ["Encoder", "build_backbone", "mlp_head"]
