"""What every monitor shares: evaluation without side effects, and the fixed monitor batches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from mimax.errors import TrainingDiverged
from mimax.runtime.device import PRECISION_DTYPES


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode under ``no_grad`` for the duration, then every submodule's own ``training`` flag back.

    Eval mode is what keeps monitoring from changing training: BatchNorm uses (and does not update) its
    running statistics, and no dropout mask consumes the global RNG. Flags are restored per module, so a
    method that keeps some module in eval mode during training finds it as it left it.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, flag in flags:
            m.training = flag


def monitor_batch_size(num_pairs: int, batch_size: int) -> int:
    """Pairs per score matrix: ``batch_size``, or all pairs when the monitor set is smaller."""
    if num_pairs < 2:
        raise ValueError(f"the monitor set needs >= 2 pairs, got {num_pairs}")
    return min(batch_size, num_pairs)


def monitor_batches(x_a: Tensor, x_b: Tensor, batch_size: int,
                    device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive full batches of ``monitor_batch_size`` pairs, in the fixed order of the monitor set.

    The remainder (fewer than one batch) is left out, so that every score matrix has the same N and the
    InfoNCE ceiling ``log N`` is the same for every batch averaged.
    """
    if x_a.shape[0] != x_b.shape[0]:
        raise ValueError(f"monitor views differ in length: {x_a.shape[0]} vs {x_b.shape[0]}")
    n = monitor_batch_size(x_a.shape[0], batch_size)
    for start in range(0, x_a.shape[0] - n + 1, n):
        yield x_a[start:start + n].to(device), x_b[start:start + n].to(device)


def run_dtype(cfg) -> torch.dtype | None:
    """The autocast dtype of the run's ``--precision`` (None: fp32, or no run config). Monitors embed in it,
    as training and the evaluation do: a bf16 run is watched through the network it trains, at bf16's cost."""
    return PRECISION_DTYPES.get(getattr(cfg, "precision", None) or "fp32")



def finite_embeddings(z: Tensor, what: str) -> Tensor:
    """``z`` if every entry is finite, else :class:`TrainingDiverged` naming ``what``: weights that are finite
    but huge (``--on_nan skip`` skips every later step, and the weight check passes) overflow the activations,
    and no monitor value of such embeddings means anything (``torch.linalg.svdvals`` raised a traceback)."""
    if not bool(torch.isfinite(z).all()):
        raise TrainingDiverged(f"the {what} of the monitor set are non-finite (the weights are finite but so large "
                               "that the activations overflow)")
    return z
