"""mimax's monitors in a PyTorch Lightning fit (optional extra: ``pip install "mimax[lightning]"``).

::

    from mimax.integrations.lightning import MonitorCallback

    cb = MonitorCallback(monitor_loader, embed=lambda module, batch: (module(batch[0]), module(batch[1])))
    lightning.Trainer(callbacks=[cb]).fit(model, train_loader)

At the end of every ``every_n_epochs``-th training epoch the callback embeds the first ``max_pairs`` pairs of
``monitor_loader`` with ``embed(pl_module, batch) -> (z_a, z_b)`` in eval mode under ``no_grad`` (each
module's mode restored), computes :func:`mimax.monitors.api.monitor_values` and logs them as
``mimax/<name>`` with ``pl_module.log_dict``. The trained-critic MI estimate (``mimax/mi_infonce`` and its
interval) runs at the last epoch only (``max_epochs`` or ``max_steps`` reached, or an early stop requested by
then) unless ``mi_every_n_epochs`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("mimax.integrations.lightning needs PyTorch Lightning: pip install lightning") from exc

from torch import Tensor

from mimax.monitors.api import collect_pairs, monitor_values
from mimax.monitors.base import evaluation_mode


def _last_epoch(trainer: pl.Trainer, epoch: int) -> bool:
    """Whether the fit ends after this epoch: ``max_epochs`` reached (-1: no epoch limit), ``max_steps`` reached
    (with ``max_steps`` alone Lightning sets ``max_epochs`` to -1, and every epoch used to count as the last), or a
    stop requested this epoch (early stopping decides before this hook when validation runs at epoch end)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return bool((max_epochs is not None and max_epochs > 0 and epoch >= max_epochs)
                or (max_steps is not None and max_steps > 0 and trainer.global_step >= max_steps)
                or trainer.should_stop)


class MonitorCallback(pl.Callback):
    """Logs mimax's monitors (docs/monitoring.md) on a fixed monitor set during a Lightning fit."""

    def __init__(self, monitor_loader: Iterable[Any], embed: Callable[[Any, Any], tuple[Tensor, Tensor]],
                 every_n_epochs: int = 1, mi_every_n_epochs: int = 0, max_pairs: int = 2048,
                 temperature: float = 0.1):
        if every_n_epochs < 1 or mi_every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 1 and mi_every_n_epochs >= 0, got {every_n_epochs} "
                             f"and {mi_every_n_epochs}")
        self.monitor_loader, self.embed = monitor_loader, embed
        self.every_n_epochs, self.mi_every_n_epochs = every_n_epochs, mi_every_n_epochs
        self.max_pairs, self.temperature = max_pairs, temperature
        self.last: dict[str, float] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last = _last_epoch(trainer, epoch)
        if epoch % self.every_n_epochs and not last:
            return
        mi = last or (self.mi_every_n_epochs > 0 and epoch % self.mi_every_n_epochs == 0)

        def embed(batch: Any) -> tuple[Tensor, Tensor]:
            return self.embed(pl_module, pl_module.transfer_batch_to_device(batch, pl_module.device, 0))

        with evaluation_mode(pl_module):
            z_a, z_b = collect_pairs(embed, self.monitor_loader, self.max_pairs)
        self.last = monitor_values(z_a, z_b, mi=mi, temperature=self.temperature)
        pl_module.log_dict({f"mimax/{k}": float(v) for k, v in self.last.items()})
