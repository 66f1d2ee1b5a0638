"""MLP heads and the encoder (backbone + projector) they complete (docs/methods.md §5)."""

from __future__ import annotations

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
