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
    depends only on the run seed and ``e``, so a resumed run sees exactly the batches it would have seen.
    ``epoch(e, start=k)`` yields exactly the batches ``k, k+1, ...`` of that same epoch (a run resumed
    from a mid-epoch checkpoint), without loading the ``k`` batches before them."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]: ...


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
