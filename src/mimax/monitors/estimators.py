"""Trained-critic mutual-information estimates with a confidence interval, for paired samples from any model.

:func:`estimate_mi` learns a small critic ``T(x, y)`` on one split of the pairs by maximizing a variational
bound of :mod:`mimax.bounds` on its score matrices ``S_ij = T(x_i, y_j)``, picks the training step by the
bound on a validation split, and reports the bound of that critic on a held-out test split — an estimate
that neither the critic's fit nor the step choice has seen. Bounds (Poole et al., 2019, "On variational
bounds of mutual information"):

- ``"infonce"``: :func:`mimax.bounds.infonce_bound` (van den Oord et al., 2018). Low variance, never above
  ``log B`` (B = pairs per evaluation batch, recorded as ``log_n``): it cannot report more than that.
- ``"nwj"``: :func:`mimax.bounds.nwj_bound` (Nguyen et al., 2010). Unbiased marginal term, variance ~ e^I.
- ``"smile"``: :func:`mimax.bounds.smile_bound`, the clipped Donsker-Varadhan estimate (Song & Ermon, 2020).

The interval is the normal-approximation interval of the held-out estimate: each bound is a mean over test
pairs of a per-pair term (InfoNCE, NWJ) or a smooth function of two such means (SMILE, delta method), whose
sample standard deviation gives the standard error. Estimate and interval are floored at 0, the constant
critic's bound (the MI is never negative; :func:`_at_the_floor`). It covers the evaluation noise of the trained
critic, not the critic's own shortfall (a variational bound is below the MI when the critic is not optimal);
the coverage measured against closed-form MI is in docs/monitoring.md.

Training draws from its own generators only: the global RNG state is the same before and after a call, so
estimating MI inside a training run does not change the run.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import asdict, dataclass
from statistics import NormalDist

import torch
from torch import Tensor, nn

from mimax.bounds import _off_diagonal, infonce_bound, jsd_bound, nwj_bound, smile_bound

BOUND_NAMES = ("infonce", "nwj", "smile")
CRITICS = ("separable", "concat")


@dataclass(frozen=True)
class MIEstimate:
    """A trained-critic MI estimate in nats: ``mi`` on the held-out test pairs, ``ci`` its (low, high)
    confidence interval at level ``confidence``, both floored at 0 (a held-out bound below 0 reads 0);
    ``log_n`` the InfoNCE ceiling ``log batch_size``;
    ``steps`` the training step of the reported critic (0: no trained critic beat the constant one, whose bound
    is 0); ``val_mi`` its bound on the validation split; ``seconds`` the wall time."""

    mi: float
    ci: tuple[float, float]
    bound: str
    critic: str
    confidence: float
    log_n: float
    n_fit: int
    n_val: int
    n_test: int
    batch_size: int
    steps: int
    val_mi: float
    seconds: float

    def as_dict(self) -> dict:
        return {**asdict(self), "ci": list(self.ci)}


SCORE_LIMIT = 20.0
SEED_RANGE = (-2**63, 2**64 - 1)  # what torch.Generator.manual_seed accepts
# Below this many pairs the validation split (10%) is too small for the constant-critic gate to reject a critic
# that does not generalize: before the floor at 0 its held-out bound read below 0 with an interval excluding 0
# in 4 of 32 estimates on 128 monitor pairs and 2 of 242 on 256 (tiny Gaussian runs, docs/monitoring.md); it now
# reads 0, which says nothing either way.
RELIABLE_PAIRS = 512


def soft_clip(s: Tensor, limit: float = SCORE_LIMIT) -> Tensor:
    """``limit * tanh(s / limit)``: scores stay in (-limit, limit) (identity near 0), so that one extreme score
    on a held-out pair cannot dominate ``exp`` in the NWJ and DV marginal terms."""
    return limit * torch.tanh(s / limit)


def _mlp(d_in: int, hidden: int, layers: int, d_out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


class SeparableCritic(nn.Module):
    """``T(x, y) = a(x)^T b(y) + c(x) + d(y)``: two MLPs, one per side, each with one extra output for
    its additive term, so that a score matrix costs two forward passes and one (N, k) x (k, N) product
    (Poole et al., 2019, "separable critic"). ``c`` and ``d`` let it represent log-density ratios with
    terms in x or y alone, such as a Gaussian's quadratic ones."""

    def __init__(self, dim_x: int, dim_y: int, hidden: int, layers: int, embed_dim: int):
        super().__init__()
        self.f = _mlp(dim_x, hidden, layers, embed_dim + 1)
        self.g = _mlp(dim_y, hidden, layers, embed_dim + 1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        a, b = self.f(x), self.g(y)
        return soft_clip(a[:, :-1] @ b[:, :-1].T + a[:, -1:] + b[:, -1:].T)


class ConcatCritic(nn.Module):
    """``T(x, y) = MLP([x, y])`` evaluated on all N^2 pairs (Belghazi et al., 2018): the most expressive
    critic, at N^2 forward rows per score matrix."""

    def __init__(self, dim_x: int, dim_y: int, hidden: int, layers: int, embed_dim: int):
        super().__init__()
        self.t = _mlp(dim_x + dim_y, hidden, layers, 1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        n = x.shape[0]
        pairs = torch.cat([x.unsqueeze(1).expand(n, y.shape[0], -1), y.unsqueeze(0).expand(n, -1, -1)], dim=2)
        return soft_clip(self.t(pairs).squeeze(-1))


def training_objective(bound: str, clip: float):
    """What the critic maximizes for ``bound``: the bound itself, except for SMILE, whose critic is trained
    with the Jensen-Shannon objective :func:`mimax.bounds.jsd_bound` (maximized by the log density ratio,
    like DV's) because the clipped DV is unbounded above in the joint term (Song & Ermon, 2020)."""
    return jsd_bound if bound == "smile" else bound_fn(bound, clip)


def bound_fn(bound: str, clip: float):
    """The :mod:`mimax.bounds` function of a score matrix that ``bound`` names."""
    if bound == "infonce":
        return infonce_bound
    if bound == "nwj":
        return nwj_bound
    if bound == "smile":
        return lambda s: smile_bound(s, clip)
    raise ValueError(f"bound must be one of {', '.join(BOUND_NAMES)}, got {bound!r}")


def per_pair_terms(scores: Tensor, bound: str, clip: float) -> Tensor:
    """Per-pair influence terms ``t_i`` of a bound on an N x N score matrix: ``mean_i t_i`` equals the bound
    for InfoNCE (``log N + S_ii - logsumexp_j S_ij``) and NWJ (``S_ii - e^{-1} mean_{j != i} e^{S_ij}``);
    for SMILE (``mean S_ii - log M``, ``M = mean_i m_i``, ``m_i = mean_{j != i} e^{clip(S_ij)}``) they are the
    delta-method terms ``S_ii - m_i / M``, whose mean is not the bound but whose spread is its standard error."""
    n = scores.shape[0]
    diag = scores.diagonal()
    if bound == "infonce":
        return math.log(n) + diag - torch.logsumexp(scores, dim=1)
    off = _off_diagonal(scores if bound == "nwj" else scores.clamp(-clip, clip)).view(n, n - 1)
    if bound == "nwj":
        return diag - torch.exp(torch.logsumexp(off, dim=1) - math.log(n - 1) - 1.0)
    log_m = torch.logsumexp(off, dim=1) - math.log(n - 1)
    return diag - torch.exp(log_m - (torch.logsumexp(log_m, dim=0) - math.log(n)))


def cca_projections(x: Tensor, y: Tensor, k: int, ridge: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Projections ``A`` (d_x, k), ``B`` (d_y, k) onto the top-``k`` canonical directions of centred ``x``, ``y``
    (Hotelling, 1936): with ridge-regularized covariances ``C_xx + r I``, ``C_yy + r I`` (``r = ridge`` x their
    mean variance), ``A = C_xx^{-1/2} U_k``, ``B = C_yy^{-1/2} V_k`` for the SVD ``C_xx^{-1/2} C_xy C_yy^{-1/2}
    = U S V^T``. By the data-processing inequality ``I(A^T x; B^T y) <= I(x; y)``."""
    n = x.shape[0]
    xc, yc = (x - x.mean(0)).double(), (y - y.mean(0)).double()

    tiny = torch.finfo(torch.float64).tiny  # the ridge is relative to the data's own variance, whatever its scale

    def inv_sqrt(c: Tensor) -> Tensor:
        r = ridge * c.diagonal().mean().clamp_min(tiny)
        w, v = torch.linalg.eigh(c + r * torch.eye(c.shape[0], dtype=c.dtype, device=c.device))
        return v @ torch.diag(w.clamp_min(r).rsqrt()) @ v.T

    wx, wy = inv_sqrt(xc.T @ xc / n), inv_sqrt(yc.T @ yc / n)
    u, _, vt = torch.linalg.svd(wx @ (xc.T @ yc / n) @ wy)
    return (wx @ u[:, :k]).to(x.dtype), (wy @ vt.T[:, :k]).to(y.dtype)


def _batches(n: int, batch_size: int) -> list[slice]:
    """Consecutive full batches of ``batch_size`` (the remainder is left out: every matrix has one N)."""
    return [slice(s, s + batch_size) for s in range(0, n - batch_size + 1, batch_size)]


@torch.no_grad()
def _evaluate(critic: nn.Module, x: Tensor, y: Tensor, batch_size: int, bound: str,
              clip: float) -> tuple[float, Tensor]:
    """The bound averaged over consecutive batches of ``batch_size`` pairs, and the per-pair terms."""
    fn = bound_fn(bound, clip)
    values, terms = [], []
    for sl in _batches(x.shape[0], batch_size):
        scores = critic(x[sl], y[sl]).double()
        values.append(fn(scores))
        terms.append(per_pair_terms(scores, bound, clip))
    return torch.stack(values).mean().item(), torch.cat(terms)


def _check_options(batch_size: int, hidden: int, layers: int, embed_dim: int, lr: float, max_steps: int,
                   eval_every: int, patience: int, fractions: tuple[float, float], max_dim: int | None,
                   clip: float, seed: int) -> None:
    """ValueError/TypeError naming the first option of :func:`estimate_mi` outside its range."""
    ints = {"batch_size": (batch_size, 2), "hidden": (hidden, 1), "layers": (layers, 0), "embed_dim": (embed_dim, 1),
            "max_steps": (max_steps, 1), "eval_every": (eval_every, 1), "patience": (patience, 1)}
    if max_dim is not None:
        ints["max_dim"] = (max_dim, 1)
    for name, (value, low) in {**ints, "seed": (seed, None)}.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if low is not None and value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:  # torch's generators take no other (a bare "Overflow ..." error)
        raise ValueError(f"seed must be in [-2**63, 2**64 - 1], got {seed}")
    for name, value in (("lr", lr), ("clip", clip)):
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if (len(fractions) != 2 or not all(isinstance(f, numbers.Real) and 0 < f < 1 for f in fractions)
            or sum(fractions) >= 1):
        raise ValueError(f"fractions must be (test, validation) shares in (0, 1) that sum to less than 1, "
                         f"got {fractions!r}")


def _device(device: torch.device | str | None, x: Tensor) -> torch.device:
    """The device to train the critic on: ``device``, or that of ``x``."""
    if device is None:
        return x.device
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from e
    if device.type == "meta":
        raise ValueError("device must hold data: 'meta' tensors have no values to train a critic on")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!s}: CUDA is not available on this machine")
    return device


def _power_of_two_scale(amax: Tensor) -> Tensor:
    """The power of two ``2^e`` with ``amax / 2^e`` in [0.5, 1) (1 where ``amax`` is 0): dividing by it is exact in
    floating point, so it changes no digit of the result of a scale-invariant computation, but keeps squares
    and sums of squares of values up to ~1e308 (or down to ~1e-308) from overflowing (or underflowing)."""
    _, exponent = torch.frexp(amax)
    return torch.ldexp(torch.ones_like(amax), exponent)


def _standardize(v: Tensor, fit: Tensor) -> Tensor:
    """``asinh((v - mean) / std)`` per coordinate with the fit rows' mean and std, computed in float64 (so that
    inputs shifted or scaled far from 1 lose no digits before the float32 critic sees them), as float32. Each
    coordinate is first divided by the power of two nearest above its fit rows' largest magnitude (exact): its
    std no longer overflows for values beyond ~1e154 (every coordinate read 0, hence mi = 0) nor underflows
    below ~1e-154. The std's floor is relative to the coordinate's magnitude: only a coordinate constant up
    to rounding is held at 0, whatever the data's scale."""
    v = v.double()
    v = v / _power_of_two_scale(v[fit].abs().amax(0))
    mean, std = v[fit].mean(0), v[fit].std(0)
    floor = (1e-12 * v[fit].abs().amax(0)).clamp_min(torch.finfo(torch.float64).tiny)
    return torch.asinh((v - mean) / std.clamp_min(floor)).float()


def _check_pairs(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be paired matrices (N, d_x) and (N, d_y), got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    for name, v in (("x", x), ("y", y)):
        if v.shape[1] == 0:
            raise ValueError(f"{name} must have at least one column (got shape {tuple(v.shape)})")
    if x.shape[0] < 16:
        raise ValueError(f"estimate_mi needs at least 16 pairs (fit, validation and test splits), got {x.shape[0]}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("x and y must be finite (found NaN or inf)")


def estimate_mi(x, y, bound: str = "infonce", *, critic: str = "separable", hidden: int = 128, layers: int = 2,
                embed_dim: int = 32, batch_size: int = 128, lr: float = 1e-3, max_steps: int = 2000,
                eval_every: int = 20, patience: int = 8, fractions: tuple[float, float] = (0.3, 0.1),
                average: float = 0.99, max_dim: int | None = 16,
                clip: float = 5.0, confidence: float = 0.95, seed: int = 0,
                device: torch.device | str | None = None) -> MIEstimate:
    """Estimate ``I(X; Y)`` in nats from ``N`` paired rows ``x`` (N, d_x) and ``y`` (N, d_y) with a trained
    critic (module docstring).

    The pairs are shuffled (``seed``) and split into fit / validation / test (``fractions`` = test and
    validation shares). When ``x`` or ``y`` is wider than ``max_dim``, both are first projected onto their
    top-``max_dim`` canonical directions fitted on the fit split (:func:`cca_projections`), of which those
    whose correlation on the validation split exceeds ``3 / sqrt(n_val)`` are kept (the first always): a
    critic fitted on a few thousand pairs overfits wide inputs, and by the data-processing inequality the
    projected pairs' MI is still a lower bound on ``I(X; Y)`` (nonlinear dependence outside those directions
    is not seen;
    ``max_dim=None`` keeps the inputs). Inputs are standardized with the fit split's per-coordinate mean
    and std (in float64, so the estimate does not depend on the inputs' offset or scale), then mapped
    through ``asinh`` (invertible per coordinate, so the MI is unchanged), which keeps
    heavy-tailed inputs from driving the critic's scores to extremes on pairs it never saw. The critic
    (``"separable"`` or ``"concat"``, ``layers`` hidden layers of width ``hidden``) is trained with Adam on
    fit batches of ``batch_size`` pairs to maximize ``bound``, for at most ``max_steps`` steps. The critic
    that is validated and reported is the running average of the trained weights (Polyak & Juditsky, 1992),
    ``w_avg <- d_t * w_avg + (1 - d_t) * w`` after step ``t``, ``d_t = min(average, (1 + t) / (10 + t))`` (the
    initial weights are forgotten within the first steps; ``average=0``: the last weights):
    every ``eval_every`` steps the averaged critic's bound is measured on the validation split, the best is
    kept, and training stops after ``patience`` checks without improvement. The first candidate is the
    constant critic, whose bound is exactly 0 for every bound here: a trained critic must beat 0 on the
    validation split to be reported, so pairs with no dependence the critic finds on held-out data read
    ``mi = 0`` with ``ci = (0, 0)`` and ``steps = 0`` (before, the first check was kept whatever it scored:
    -3 nats on 128-d independent pairs). The returned ``mi`` is that
    critic's bound on the test split, averaged over test batches of ``min(batch_size, n_test)`` pairs, floored at
    0 with its interval (:func:`_at_the_floor`): a critic that beat 0 on the validation split by chance has a
    held-out bound slightly below 0, which is no evidence of anything (the MI is never negative), so it reads
    ``mi = 0`` with ``ci = (0, high)`` (``high`` floored too) while ``steps`` and ``val_mi`` still describe it.

    Why the averaging and the 60% fit share: with a critic ``T = log r + e`` off the log density ratio
    ``log r`` by ``e``, the DV value is ``I + E_p[e] - log E_p[e^e] ~ I - Var_p(e) / 2`` (NWJ and InfoNCE lose
    the same order), so the shortfall of a held-out bound is mostly the variance of the critic fitted on
    finitely many pairs. Averaging the iterates and fitting on more pairs both cut that variance; they
    roughly halve the low bias on the closed-form tasks (docs/monitoring.md), whereas the bound of the exact
    log ratio on the same test batches is within a few hundredths of a nat of the truth.
    """
    if bound not in BOUND_NAMES:
        raise ValueError(f"bound must be one of {', '.join(BOUND_NAMES)}, got {bound!r}")
    if critic not in CRITICS:
        raise ValueError(f"critic must be one of {', '.join(CRITICS)}, got {critic!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not 0 <= average < 1:
        raise ValueError(f"average must be in [0, 1), got {average}")
    _check_options(batch_size, hidden, layers, embed_dim, lr, max_steps, eval_every, patience, fractions, max_dim,
                   clip, seed)
    t0 = time.perf_counter()
    # inference mode off (an inference tensor cannot take part in the critic's training graph)
    with torch.inference_mode(False):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        _check_pairs(x, y)
        device = _device(device, x)
        # float64 until standardized: the projection and the standardization see the inputs' own digits
        x, y = x.detach().to(device, torch.float64), y.detach().to(device, torch.float64)
        return _estimate(x, y, bound, critic, hidden, layers, embed_dim, batch_size, lr, max_steps, eval_every,
                         patience, fractions, average, max_dim, clip, confidence, int(seed), device, t0)


def _split(n: int, fractions: tuple[float, float], gen: torch.Generator,
           device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """A seeded random partition of ``range(n)`` into (fit, validation, test) indices, the last two of
    ``fractions`` of the pairs (at least 4 each)."""
    n_test = max(4, int(round(fractions[0] * n)))
    n_val = max(4, int(round(fractions[1] * n)))
    n_fit = n - n_test - n_val
    if n_fit < 4:
        raise ValueError(f"fractions {fractions} leave {n_fit} of {n} pairs to fit the critic; need >= 4")
    order = torch.randperm(n, generator=gen).to(device)
    return order[:n_fit], order[n_fit:n_fit + n_val], order[n_fit + n_val:]


def _reduce(x: Tensor, y: Tensor, fit: Tensor, val: Tensor, max_dim: int) -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` projected on the top canonical directions fitted on ``fit`` (at most ``max_dim``), keeping
    those whose correlation also holds on ``val`` (above 3 standard errors) and always the first."""
    # one exact power-of-two scale per side (CCA is invariant to it): covariances of values beyond ~1e154 overflow
    x, y = x / _power_of_two_scale(x[fit].abs().amax()), y / _power_of_two_scale(y[fit].abs().amax())
    a, b = cca_projections(x[fit], y[fit], min(max_dim, x.shape[1], y.shape[1], fit.numel()))
    pa, pb = x[val] @ a, y[val] @ b
    pa, pb = pa - pa.mean(0), pb - pb.mean(0)
    corr = (pa * pb).sum(0) / (pa.norm(dim=0) * pb.norm(dim=0)).clamp_min(torch.finfo(pa.dtype).tiny)
    keep = corr > 3 / math.sqrt(val.numel())
    keep[0] = True  # the critic needs an input; on it, a critic no better than its start is caught later
    return x @ a[:, keep], y @ b[:, keep]


def _train_critic(model: nn.Module, xs: Tensor, ys: Tensor, fit: Tensor, val: Tensor, fn, bound: str, clip: float,
                  batch_size: int, lr: float, max_steps: int, eval_every: int, patience: int, average: float,
                  gen: torch.Generator, device: torch.device) -> tuple[nn.Module | None, float, int]:
    """Adam on ``-fn(critic scores)`` over shuffled batches of the fit pairs, with an exponential average of the
    weights that is validated every ``eval_every`` steps; stops after ``patience`` checks without a gain or at
    ``max_steps``. Returns the best validated averaged critic, its validation bound and its step, or ``(None,
    0.0, 0)`` when none beat the constant critic, whose bound is exactly 0 for every bound here (InfoNCE: T = 0,
    NWJ: T = 1, SMILE: any constant). Independent pairs, or a fit that learned only the fit split's noise, then
    read 0 nats, not the first (overfitted) check nor an untrained critic (NWJ ~ -1/e)."""
    n_fit = fit.numel()
    train_bs, val_bs = max(2, min(batch_size, n_fit)), max(2, min(batch_size, val.numel()))
    # one fused kernel per step where torch has one: the critic is small, so the per-tensor optimizer
    # arithmetic would be a third of a step
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    opt = torch.optim.Adam(model.parameters(), lr=lr, **fused)
    averaged = copy.deepcopy(model).requires_grad_(False)  # the critic that is validated and reported
    avg_params, params = list(averaged.parameters()), list(model.parameters())
    best_val, best_state, best_step, bad, step = 0.0, None, 0, 0, 0
    while step < max_steps and bad < patience:
        perm = fit[torch.randperm(n_fit, generator=gen).to(device)]
        for sl in _batches(n_fit, train_bs):
            idx = perm[sl]
            loss = -fn(model(xs[idx], ys[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            decay = min(average, (1.0 + step) / (10.0 + step))  # short runs: the average forgets the init
            with torch.no_grad():
                torch._foreach_lerp_(avg_params, params, 1.0 - decay)
            if step % eval_every == 0 or step == max_steps:
                v, _ = _evaluate(averaged, xs[val], ys[val], val_bs, bound, clip)
                if v > best_val:
                    best_val, best_state, best_step, bad = v, copy.deepcopy(averaged.state_dict()), step, 0
                else:
                    bad += 1
            if step >= max_steps or bad >= patience:
                break
    if best_state is None:
        return None, 0.0, 0
    averaged.load_state_dict(best_state)
    return averaged, best_val, best_step


def _at_the_floor(mi: float, ci: tuple[float, float]) -> tuple[float, tuple[float, float]]:
    """The held-out bound ``mi`` of the selected critic and its interval ``ci`` raised to 0 where below it.

    ``mi`` estimates the critic's bound ``B``, a lower bound on the MI; the constant critic's bound, 0, is another
    (the MI is never negative), so ``max(B, 0)`` is the tighter one. Its estimate is ``max(mi, 0)`` and, ``max``
    being monotone, ``(max(low, 0), max(high, 0))`` covers it exactly when ``ci`` covers ``B``: no interval is
    chosen on the test split. A critic that beat 0 on the validation split by chance (independent pairs) has a
    held-out bound slightly below 0 with a small standard error: it read as a significant negative MI, an
    interval excluding the true 0 in about 1 in 5 samples of 4,000 independent pairs; it now reads 0."""
    return max(mi, 0.0), (max(ci[0], 0.0), max(ci[1], 0.0))


def _estimate(x: Tensor, y: Tensor, bound: str, critic: str, hidden: int, layers: int, embed_dim: int,
              batch_size: int, lr: float, max_steps: int, eval_every: int, patience: int,
              fractions: tuple[float, float], average: float, max_dim: int | None, clip: float, confidence: float,
              seed: int, device: torch.device, t0: float) -> MIEstimate:
    """:func:`estimate_mi` on checked float64 inputs on ``device``: split, reduce, standardize, train the
    critic on the fit split, select it on the validation split, evaluate it on the test split."""
    gen = torch.Generator().manual_seed(seed)
    fit, val, test = _split(x.shape[0], fractions, gen, device)
    if max_dim is not None and max(x.shape[1], y.shape[1]) > max_dim:
        x, y = _reduce(x, y, fit, val, max_dim)
    xs, ys = _standardize(x, fit), _standardize(y, fit)  # per-coordinate invertible: MI unchanged
    eval_bs = max(2, min(batch_size, test.numel()))
    devices = [device] if device.type == "cuda" else []
    # the caller's global RNG is left as it was; gradients are on even when the caller is under no_grad
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(seed)
        cls = SeparableCritic if critic == "separable" else ConcatCritic
        model = cls(x.shape[1], y.shape[1], hidden, layers, embed_dim).to(device)
        best, best_val, best_step = _train_critic(
            model, xs, ys, fit, val, training_objective(bound, clip), bound, clip, batch_size, lr, max_steps,
            eval_every, patience, average, gen, device)
        if best is None:  # the constant critic: its bound and every per-pair term are 0
            mi, terms = 0.0, torch.zeros(len(_batches(test.numel(), eval_bs)) * eval_bs, dtype=torch.float64)
        else:
            mi, terms = _evaluate(best, xs[test], ys[test], eval_bs, bound, clip)
    se = terms.std().item() / math.sqrt(terms.numel()) if terms.numel() > 1 else math.inf
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    mi, ci = _at_the_floor(mi, (mi - z * se, mi + z * se))
    return MIEstimate(mi=mi, ci=ci, bound=bound, critic=critic, confidence=confidence,
                      log_n=math.log(eval_bs), n_fit=fit.numel(), n_val=val.numel(), n_test=test.numel(),
                      batch_size=eval_bs, steps=best_step, val_mi=best_val, seconds=time.perf_counter() - t0)
