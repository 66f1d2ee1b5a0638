"""Divergence handling: a non-finite loss or gradient stops the run (``--on_nan stop``) or its optimizer
step is skipped (``--on_nan skip``), and a checkpoint is never written from non-finite weights.

Design (keeping host syncs out of the training step):

- ``stop``: on an accelerator each step folds ``isfinite(loss) & isfinite(||grad||_2)`` into device-side
  tensors (the first bad step and its loss terms, kept with ``torch.where``); nothing is copied to the host.
  The flag is read every ``CHECK_INTERVAL`` steps and at each epoch end, so a diverged run stops within that
  bound and the weights it reached are never saved. On the CPU, where reading a scalar costs nothing, the
  first bad step is recorded on the host instead (the ``torch.where`` bookkeeping was ~0.2 ms of a
  ~7 ms step of ``mimax demo``), and raised at the same points. The per-step cost is one multi-tensor
  gradient norm (``torch.nn.utils.get_total_norm``) and a few scalar kernels.
- ``skip``: whether to take the step must be known before ``optimizer.step()``, so this mode pays one
  host sync per step; skipped steps are counted per epoch (``skipped_steps`` in ``metrics.csv``) and
  reported on stderr.
- Before every checkpoint, :func:`check_weights` verifies all parameters and buffers are finite (this
  also catches an optimizer that produced non-finite weights from finite gradients).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from mimax.errors import TrainingDiverged

__all__ = ["CHECK_INTERVAL", "NonFiniteGuard", "TrainingDiverged", "check_weights", "grad_norm"]

CHECK_INTERVAL = 100  # steps between host reads of the device-side divergence flag (mode "stop")


def grad_norm(params: Iterable[Tensor], device: torch.device) -> Tensor:
    """``||g||_2`` over all gradients (a 0-d tensor on ``device``; non-finite iff any entry is, or on
    overflow); 0 when there are none (e.g. under fp16's GradScaler, which handles overflow itself)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0).to(device)


def format_terms(terms: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in terms.items())


class NonFiniteGuard:
    """Watches every training step; see the module docstring for the stop/skip design."""

    def __init__(self, mode: str, check_interval: int = CHECK_INTERVAL, host_record: bool | None = None):
        if mode not in ("stop", "skip"):
            raise ValueError(f"on_nan mode must be 'stop' or 'skip', got {mode!r}")
        self.mode = mode
        self.check_interval = check_interval
        self.skipped = 0  # skipped steps since the last epoch_report()
        self.first_skip: tuple[int, dict[str, float], float] | None = None
        self._bad_step: Tensor | None = None  # -1 while all steps were finite
        self._bad_terms: dict[tuple[str, ...], tuple[Tensor, Tensor]] = {}  # (values, written)
        self._bad_gnorm: Tensor | None = None
        self._since_check = 0
        # mode stop: where the first bad step is recorded; None: on the host for CPU tensors (a host read is
        # free there), on the device otherwise
        self.host_record = host_record
        self._first_bad: tuple[int, dict[str, float], float] | None = None  # (step, terms, ||g||)
        self._buffers: list[Tensor] = []
        self._saved: list[Tensor] = []

    def before_step(self, module: nn.Module) -> None:
        """Mode ``skip``: remember the buffers (BatchNorm running statistics and batch counts) the forward pass
        is about to update, so a skipped step leaves the model exactly as it was. No-op in mode ``stop``."""
        if self.mode != "skip":
            return
        if not self._buffers:
            self._buffers = list(module.buffers())
            self._saved = [b.detach().clone() for b in self._buffers]
        else:
            for saved, buf in zip(self._saved, self._buffers):
                saved.copy_(buf)

    def observe(self, step: int, terms: dict[str, Tensor], params: Iterable[Tensor]) -> bool:
        """Call after ``backward()``; returns whether to take the optimizer step."""
        loss = terms["loss"].detach()
        gnorm = grad_norm(params, loss.device).detach()
        if self.mode == "stop" and self._records_on_host(loss.device):
            if self._first_bad is None and not math.isfinite(float(loss) + float(gnorm)):
                self._first_bad = (step, {k: float(v.detach()) for k, v in terms.items()}, float(gnorm))
            self._since_check += 1
            return True
        loss, gnorm = loss.float(), gnorm.float()
        finite = torch.isfinite(loss + gnorm)  # NaN/Inf in either propagates
        if self.mode == "skip":
            if bool(finite):  # host sync: the decision is needed before optimizer.step()
                return True
            self.skipped += 1
            for buf, saved in zip(self._buffers, self._saved):  # undo this forward's BatchNorm statistics
                buf.copy_(saved)
            if self.first_skip is None:
                self.first_skip = (step, {k: float(v.detach()) for k, v in terms.items()}, float(gnorm))
            return False
        if self._bad_step is None:
            self._bad_step = torch.full((), -1, dtype=torch.long, device=gnorm.device)
            self._bad_gnorm = torch.zeros((), device=gnorm.device)
        newly = ~finite & (self._bad_step < 0)
        self._bad_step = torch.where(newly, step, self._bad_step)
        self._bad_gnorm = torch.where(newly, gnorm, self._bad_gnorm)
        keys = tuple(terms)
        values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
        prev = self._bad_terms.get(keys)
        if prev is None:
            prev = (torch.zeros_like(values), torch.zeros((), dtype=torch.bool, device=values.device))
        self._bad_terms[keys] = (torch.where(newly, values, prev[0]), prev[1] | newly)
        self._since_check += 1
        return True

    def _records_on_host(self, device: torch.device) -> bool:
        """Mode stop: the first bad step is kept on the host for CPU tensors (unless told otherwise)."""
        return self.host_record if self.host_record is not None else device.type == "cpu"

    def due(self) -> bool:
        """Whether the bounded check interval has elapsed (mode ``stop``)."""
        return self._since_check >= self.check_interval

    def check(self, steps_per_epoch: int, last_good: str) -> None:
        """Read the flag (one host sync on an accelerator); raise :class:`TrainingDiverged` if a step was bad."""
        self._since_check = 0
        if self._first_bad is None:
            self._first_bad = self._device_side_first_bad()
        if self._first_bad is None:
            return
        step, terms, gnorm = self._first_bad
        raise TrainingDiverged(
            f"training diverged at step {step} (epoch {step // steps_per_epoch + 1}): non-finite loss or gradient "
            f"({format_terms(terms)}, grad_norm={gnorm:.6g}); last good checkpoint: {last_good}; "
            "lower --initial_lr, or pass --on_nan skip to skip such steps")

    def _device_side_first_bad(self) -> tuple[int, dict[str, float], float] | None:
        """The first bad step recorded on an accelerator, read back (None if every step was finite)."""
        if self._bad_step is None:
            return None
        step = int(self._bad_step)
        if step < 0:
            return None
        terms: dict[str, float] = {}
        for keys, (values, written) in self._bad_terms.items():
            if bool(written):
                terms = dict(zip(keys, values.tolist()))
        return step, terms, float(self._bad_gnorm)

    def epoch_report(self, where: str) -> int:
        """Skipped steps since the last report (mode ``skip``), with a stderr warning if any; resets."""
        n, first = self.skipped, self.first_skip
        if first is not None:
            print(f"mimax: warning: {where}: skipped {n} step(s) with a non-finite loss or gradient (first: step "
                  f"{first[0]}, {format_terms(first[1])}, grad_norm={first[2]:.6g})", file=sys.stderr)
        self.skipped, self.first_skip = 0, None
        return n


def check_weights(module: nn.Module, step: int, last_good: str) -> None:
    """Raise :class:`TrainingDiverged` if any parameter or buffer is non-finite (before a checkpoint)."""
    tensors = [(n, t) for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_floating_point()]
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])
    if bool(finite.all()):  # one host sync per checkpoint
        return
    name = tensors[int((~finite).nonzero()[0])][0]
    raise TrainingDiverged(f"training diverged by step {step}: weight {name} is non-finite; no checkpoint written; "
                           f"last good checkpoint: {last_good}")
