"""Networks: backbones (MLP, torchvision ResNets), MLP heads (projector, predictor) and the encoder."""

from __future__ import annotations

from mimax.nets.backbones import build_backbone
from mimax.nets.heads import Encoder, EncoderSpec, mlp_head


def build_encoder(spec: EncoderSpec, input_shape: tuple[int, ...], projector_last_bn: bool = False) -> Encoder:
    """The backbone of ``spec.architecture`` for ``input_shape`` plus a projector of ``spec.projection_layer``
    layers, ``backbone_dim -> projector_hidden_dim -> ... -> projection_dim``."""
    backbone, backbone_dim = build_backbone(spec.architecture, input_shape, spec.mlp_hidden_dim, spec.resnet_width)
    projector = mlp_head(backbone_dim, spec.projector_hidden_dim, spec.projection_dim, spec.projection_layer,
                         projector_last_bn)
    return Encoder(backbone, projector)


__all__ = ["Encoder", "EncoderSpec", "build_backbone", "build_encoder", "mlp_head"]
