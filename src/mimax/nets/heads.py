"""MLP heads and the encoder (backbone + projector) they complete (docs/methods.md §5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, last_bn: bool = False) -> nn.Sequential:
    """``num_layers`` linear layers ``in -> hidden -> ... -> out``, BatchNorm + ReLU between layers.

    ``last_bn`` appends a BatchNorm after the last layer (MoCo-v3's and SimSiam's projectors, as in
    their papers). With ``num_layers=1`` the head is a single linear map.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i in range(num_layers):
        last = i == num_layers - 1
        followed_by_bn = not last or last_bn  # a bias before BatchNorm is redundant
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=not followed_by_bn))
        if not last:
            layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """An encoder = backbone + projector. ``forward`` returns the embedding; ``features`` the backbone's."""

    def __init__(self, backbone: nn.Module, projector: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.backbone(x))


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder is built from: the backbone (``--architecture``, its width) and the projector
    (``--projection_layer`` linear layers, hidden width ``--feature_dim``, output ``--projection_dim``).

    ``projector_hidden_dim`` is the projector's hidden width (the reference flag ``--feature_dim``), not
    the backbone's output width, which the backbone determines (``backbone_dim`` in :func:`build_encoder`).
    """

    architecture: str
    projector_hidden_dim: int
    projection_dim: int
    projection_layer: int
    mlp_hidden_dim: int = 64
    resnet_width: int = 64

    @classmethod
    def from_config(cls, cfg: Any) -> EncoderSpec:
        return cls(cfg.architecture, cfg.feature_dim, cfg.projection_dim, cfg.projection_layer,
                   cfg.mlp_hidden_dim, cfg.resnet_width)
