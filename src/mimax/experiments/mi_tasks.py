"""Sampling tasks with closed-form mutual information, in the manner of the benchmark of Czyż et al. (2023,
"Beyond normal: on the evaluation of mutual information estimators"): multivariate Gaussians (dense and
sparse interactions), multivariate Student-t, and per-coordinate monotone transforms of them (which leave
the MI unchanged: ``I(f(X); g(Y)) = I(X; Y)`` for injective ``f``, ``g``).

The tasks validate :func:`mimax.estimate_mi` (tests) and produce the estimator x task table of
docs/monitoring.md (``benchmarks/mi_estimators.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

Transform = Callable[[np.ndarray], np.ndarray]


def gaussian_mi(cov: np.ndarray, dim_x: int) -> float:
    """``I(X; Y) = 1/2 log( det S_xx det S_yy / det S )`` for ``(X, Y) ~ N(0, S)`` with X the first ``dim_x``
    coordinates. Equals ``-1/2 sum_k log(1 - rho_k^2)`` over the canonical correlations rho_k."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not 0 < dim_x < cov.shape[0]:
        raise ValueError(f"cov must be square with 0 < dim_x < its size, got {cov.shape} and dim_x = {dim_x}")
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    return 0.5 * float(logdet(cov[:dim_x, :dim_x]) + logdet(cov[dim_x:, dim_x:]) - logdet(cov))


def student_t_correction(dof: float, dim_x: int, dim_y: int) -> float:
    """What a multivariate Student-t adds to the MI of the Gaussian with the same dispersion matrix
    (Arellano-Valle et al., 2013; Czyż et al., 2023, eq. for the Student-t task):
    ``h(nu) + h(nu + m + n) - h(nu + m) - h(nu + n)``, ``h(k) = log Gamma(k/2) - k/2 psi(k/2)``.
    Positive for finite ``nu`` (the shared scale makes X and Y dependent even when uncorrelated); 0 as
    ``nu -> inf``."""
    if dof <= 0:
        raise ValueError(f"dof must be > 0, got {dof}")

    def h(k: float) -> float:
        return float(special.gammaln(k / 2) - k / 2 * special.digamma(k / 2))

    return h(dof) + h(dof + dim_x + dim_y) - h(dof + dim_x) - h(dof + dim_y)


def canonical_cov(dim_x: int, dim_y: int, correlations: list[float]) -> np.ndarray:
    """Unit-variance covariance where ``x_k`` and ``y_k`` correlate with ``correlations[k]`` and every other
    pair is independent ("sparse interactions" when fewer correlations than dimensions)."""
    if len(correlations) > min(dim_x, dim_y) or any(not -1 < r < 1 for r in correlations):
        raise ValueError(f"need at most min(dim_x, dim_y) correlations in (-1, 1), got {correlations}")
    cov = np.eye(dim_x + dim_y)
    for k, r in enumerate(correlations):
        cov[k, dim_x + k] = cov[dim_x + k, k] = r
    return cov


def dense_cov(dim_x: int, dim_y: int, rho: float) -> np.ndarray:
    """Unit variances, every (x_i, y_j) pair correlated with ``rho``, x's (and y's) coordinates independent
    ("dense interactions"). Positive definite for ``|rho| < 1/sqrt(dim_x dim_y)``."""
    cov = np.eye(dim_x + dim_y)
    cov[:dim_x, dim_x:] = rho
    cov[dim_x:, :dim_x] = rho
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError(f"dense covariance with rho = {rho} is not positive definite at {dim_x} x {dim_y}")
    return cov


def half_cube(x: np.ndarray) -> np.ndarray:
    """``sign(x) |x|^{3/2}`` per coordinate: monotone, so MI-preserving (Czyż et al., 2023)."""
    return np.sign(x) * np.abs(x) ** 1.5


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """``Phi(x)`` per coordinate: uniform margins for a standard normal coordinate; monotone."""
    return special.ndtr(x)


TRANSFORMS: dict[str, Transform] = {"half-cube": half_cube, "asinh": np.arcsinh, "normal-cdf": normal_cdf}


@dataclass(frozen=True)
class MITask:
    """A distribution of pairs (X, Y) with known ``mi`` (nats): Gaussian (``dof = None``) or Student-t with
    dispersion ``cov``, then ``transform`` applied to every coordinate of both X and Y."""

    name: str
    cov: np.ndarray
    dim_x: int
    dof: float | None = None
    transform: str | None = None

    @property
    def dim_y(self) -> int:
        return self.cov.shape[0] - self.dim_x

    @property
    def mi(self) -> float:
        mi = gaussian_mi(self.cov, self.dim_x)
        if self.dof is not None:
            mi += student_t_correction(self.dof, self.dim_x, self.dim_y)
        return mi

    @property
    def gaussian(self) -> bool:
        return self.dof is None

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` pairs as float32 arrays ``(n, dim_x)``, ``(n, dim_y)``, reproducible from ``seed``."""
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, self.cov.shape[0])) @ np.linalg.cholesky(self.cov).T
        if self.dof is not None:
            z = z / np.sqrt(rng.chisquare(self.dof, size=(n, 1)) / self.dof)
        if self.transform is not None:
            z = TRANSFORMS[self.transform](z)
        return z[:, :self.dim_x].astype(np.float32), z[:, self.dim_x:].astype(np.float32)


def standard_tasks() -> list[MITask]:
    """The tasks of the estimator x task table: Gaussians of several dimensions and correlations (sparse and
    dense interactions), Student-t, and monotone transforms of both."""
    sparse = canonical_cov(5, 5, [0.8, 0.8])
    return [
        MITask("gauss 1x1 rho=0.5", canonical_cov(1, 1, [0.5]), 1),
        MITask("gauss 2x2 rho=0.75", canonical_cov(2, 2, [0.75, 0.75]), 2),
        MITask("gauss 5x5 sparse 2x rho=0.8", sparse, 5),
        MITask("gauss 3x3 dense rho=0.3", dense_cov(3, 3, 0.3), 3),
        MITask("gauss 3x3 rho=0.9", canonical_cov(3, 3, [0.9, 0.9, 0.9]), 3),
        MITask("student-t 2x2 dof=5 rho=0.5", canonical_cov(2, 2, [0.5, 0.5]), 2, dof=5.0),
        MITask("half-cube gauss 5x5 sparse", sparse, 5, transform="half-cube"),
        MITask("asinh student-t 2x2 dof=5", canonical_cov(2, 2, [0.5, 0.5]), 2, dof=5.0, transform="asinh"),
        MITask("normal-cdf gauss 2x2 rho=0.75", canonical_cov(2, 2, [0.75, 0.75]), 2, transform="normal-cdf"),
    ]


def canonical_mi(correlations: list[float]) -> float:
    """``-1/2 sum_k log(1 - rho_k^2)``: the Gaussian MI from canonical correlations."""
    return -0.5 * sum(math.log1p(-r * r) for r in correlations)
