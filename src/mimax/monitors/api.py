"""The monitors for any model, outside mimax's trainer: hand over two views' embeddings (or a function from a
batch to them, plus batches), get a dict of monitor values. Used by ``mimax analyze`` and the Lightning
callback; documented in docs/monitoring.md ("Any model")."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from mimax.monitors.collapse import effective_rank, normalized_embedding_std
from mimax.monitors.estimators import estimate_mi
from mimax.monitors.mi import fixed_critic_rows
from mimax.monitors.rank import geometry, spectrum

EmbedFn = Callable[[Any], tuple[Tensor, Tensor]]


def collect_pairs(embed: EmbedFn, batches: Iterable[Any], max_pairs: int) -> tuple[Tensor, Tensor]:
    """``embed(batch) -> (z_a, z_b)`` over ``batches`` under ``no_grad``, concatenated (float32, CPU) until
    ``max_pairs`` rows."""
    za, zb, n = [], [], 0
    with torch.no_grad():
        for batch in batches:
            a, b = embed(batch)
            if a.ndim != 2 or a.shape[0] != b.shape[0]:
                raise ValueError(f"embed(batch) must return two (B, D) embeddings of the same B, got "
                                 f"{tuple(a.shape)} and {tuple(b.shape)}")
            za.append(a.detach().float().cpu())
            zb.append(b.detach().float().cpu())
            n += a.shape[0]
            if n >= max_pairs:
                break
    if not za:
        raise ValueError("no batches to embed")
    return torch.cat(za)[:max_pairs], torch.cat(zb)[:max_pairs]


def _as_embeddings(z: Any) -> Tensor:
    """``z`` as a CPU tensor in float32, or in float64 if it is float64 (its values may not fit float32)."""
    z = torch.as_tensor(z).detach().cpu()
    return z if z.dtype == torch.float64 else z.float()


def monitor_values(z_a: Tensor | EmbedFn, z_b: Tensor | Iterable[Any], *, max_pairs: int = 2048,
                   mi: bool = True, temperature: float = 0.1, batch_size: int = 512,
                   seed: int = 0) -> dict[str, float]:
    """Every monitor of docs/monitoring.md for paired embeddings of two views of the same samples.

    Call as ``monitor_values(z_a, z_b)`` with embeddings (N, D), or ``monitor_values(embed, batches)`` with
    ``embed(batch) -> (z_a, z_b)`` (run under ``no_grad``; put the model in eval mode yourself) over the
    first ``max_pairs`` pairs of ``batches``. Returns (all floats; nats where MI):

    - ``rankme``, ``alpha_req``, ``emb_std``, ``emb_erank``: on ``z_a``;
    - ``lidar``, ``alignment``, ``uniformity``: on the pairs (two views per sample);
    - ``score_<name>``, ``score_<name>_shuffled``, ``score_<name>_gap`` for the fixed cosine critic at
      ``temperature`` (contrast scores, not MI) with ``<name>`` in cos-DV, InfoNCE, JSD;
    - with ``mi`` and at least 16 pairs (its fit, validation and test splits): ``mi_infonce`` and its 95%
      interval ``mi_infonce_low``/``_high`` (trained critic, :func:`mimax.estimate_mi`), ``mi_log_n`` its
      ceiling; with fewer pairs these keys are left out.

    Embeddings are read in float32 (float64 ones in float64), on the CPU.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2 (pairs per fixed-critic score matrix), got "
                         f"{batch_size!r}")
    if isinstance(temperature, bool) or not (isinstance(temperature, numbers.Real) and math.isfinite(temperature)
                                             and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0 (the fixed critic's), got {temperature!r}")
    if callable(z_a):
        z_a, z_b = collect_pairs(z_a, z_b, max_pairs)
    z_a, z_b = _as_embeddings(z_a), _as_embeddings(z_b)
    if z_a.ndim != 2 or z_a.shape != z_b.shape or z_a.shape[0] < 2:
        raise ValueError(f"z_a and z_b must be (N, D) embeddings of equal shape with N >= 2, got "
                         f"{tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if not (torch.isfinite(z_a).all() and torch.isfinite(z_b).all()):  # (the SVD would fail to converge)
        raise ValueError("z_a and z_b must be finite (found NaN or inf): has the model diverged?")
    out: dict[str, float] = {**spectrum(z_a), "emb_std": normalized_embedding_std(z_a).item(),
                             "emb_erank": effective_rank(z_a).item(), **geometry(z_a, z_b)}
    for row in fixed_critic_rows({"z": (z_a, z_b)}, batch_size, temperature):
        name = row["estimator"]
        out.update({f"score_{name}": row["value"], f"score_{name}_shuffled": row["shuffled"],
                    f"score_{name}_gap": row["gap"]})
    if mi and z_a.shape[0] >= 16:
        est = estimate_mi(z_a, z_b, bound="infonce", seed=seed)
        out.update({"mi_infonce": est.mi, "mi_infonce_low": est.ci[0], "mi_infonce_high": est.ci[1],
                    "mi_log_n": est.log_n})
    return out
