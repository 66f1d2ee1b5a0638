"""What the training loop shows to the code that watches it (monitors, recorders, user hooks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mimax.data import DataBundle
from mimax.paradigms import Method


@dataclass
class RunState:
    """The run's objects and where training stands (``epoch`` and ``step`` count completed ones)."""

    cfg: Any  # the resolved mimax.config.Config
    method: Method
    data: DataBundle
    device: torch.device
    run_dir: Path
    seed: int
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    stop_reason: str | None = None  # set by a callback (``--stop_on_collapse``) to end the run after this epoch
    # what monitors measured this epoch, for the printed line and TensorBoard ("mi": the MI monitor's rows)
    extra: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Hooks into the loop (MI monitors, collapse monitors, trajectory recorders, TensorBoard).

    Callbacks run on the process that writes files (rank 0), in eval mode if they evaluate anything, and
    must not draw from the global RNG, so that a watched run trains exactly as an unwatched one."""

    def on_train_start(self, state: RunState) -> None:
        """Before the first step of a fresh run (not called when resuming past epoch 0)."""

    def on_epoch_end(self, state: RunState) -> dict[str, float]:
        """After each epoch; returned values become extra columns of that epoch's ``metrics.csv`` row."""
        return {}

    def before_checkpoint(self, state: RunState) -> None:
        """Before every checkpoint is written (rank 0, at an epoch's end or mid-epoch): a callback whose file
        a resumed run reads back writes it here, so every checkpoint has it up to date."""

    def on_train_end(self, state: RunState) -> None:
        """After the last epoch of a completed run."""
