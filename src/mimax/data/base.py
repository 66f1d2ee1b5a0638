"""What the engine needs from a dataset: two-view batches for pretraining, clean labelled sets for
evaluation, and a fixed set of view pairs for the MI monitors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor
from torch.utils.data import Dataset


class ViewLoader(Protocol):
    """Pretraining batches. ``epoch(e)`` yields ``(x_a, x_b)`` view batches on the training device and
    depends only on the run seed and ``e``, so a resumed run sees exactly the batches it would have seen."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]: ...


@dataclass
class DataBundle:
    """A dataset prepared for one run."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    train_views: ViewLoader
    probe_train: Dataset | None  # (x, y) without augmentation, for the linear probe / kNN
    probe_test: Dataset | None
    monitor_views: tuple[Tensor, Tensor] | None = None  # fixed (x_a, x_b) pairs for the MI monitors
    monitor_labels: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
