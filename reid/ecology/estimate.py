"""What every estimator returns, and the numerical tools they share: a maximum-likelihood fit
with standard errors from the Hessian, logit helpers, the log-normal interval for N.

The closed-population models use the full likelihood of Otis et al. (1978), as Program MARK and
CAPTURE do (not the conditional likelihood of Huggins or the log-linear fits of Rcapture):

    L(N, theta) = N! / (N - M)! * prod_i P(history_i | theta) * P(never caught | theta)^(N - M)

with N = M + f0 and f0 = exp(beta_0) > 0, so N is real-valued and at least M (the animals
caught). The interval for N is the log-normal one of Chao (1987) that MARK prints: with
C = exp(z * sqrt(log(1 + var(f0) / f0^2))), N in [M + f0 / C, M + f0 * C].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize
from scipy.differentiate import hessian
from scipy.special import expit
from scipy.stats import norm

Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True)
class Parameter:
    """One estimated quantity on its natural scale, with its SE and 95 % interval (None where
    the model cannot give them, e.g. a singular Hessian)."""

    name: str
    estimate: float
    se: float | None = None
    lcl: float | None = None
    ucl: float | None = None


@dataclass(frozen=True)
class Estimate:
    """One model's fit: N (closed models) or survival and capture (CJS), AIC and what it used.

    ``n_hat`` is None for open-population models; ``parameters`` holds everything estimated,
    N included; ``log_likelihood`` excludes constants that do not depend on the parameters, as
    MARK does, so AIC values of the models of one data set compare."""

    model: str
    parameters: list[Parameter]
    log_likelihood: float | None = None
    num_params: int = 0
    interval: str = ""
    note: str = ""
    n_hat: Parameter | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def aic(self) -> float | None:
        if self.log_likelihood is None:
            return None
        return -2.0 * self.log_likelihood + 2.0 * self.num_params

    def get(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"{self.model} has no parameter {name!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["aic"] = self.aic
        return out


@dataclass(frozen=True)
class Fit:
    """A minimised negative log-likelihood: the estimate (K,), the minimum, the covariance
    (K, K) from the inverse Hessian (None where the Hessian is singular)."""

    beta: np.ndarray
    nll: float
    cov: np.ndarray | None


def caught_rows(ch: np.ndarray) -> np.ndarray:
    """(I, T) int64 capture matrix of the animals caught at least once, from a 0/1 ``ch``;
    ValueError for any other shape or value."""
    ch = np.asarray(ch)
    if ch.ndim != 2:
        raise ValueError(f"a capture matrix is (animals, occasions), not shape {ch.shape}")
    if not np.isin(ch, (0, 1)).all():
        raise ValueError("a capture matrix holds only 0 and 1")
    ch = ch.astype(np.int64)
    return ch[ch.sum(axis=1) > 0]


def fit_mle(nll: Callable[[np.ndarray], float], starts: list[np.ndarray]) -> Fit:
    """Minimise ``nll`` from each start (BFGS, then Nelder-Mead polish where BFGS stalls) and
    return the best, with its covariance from a numerical Hessian (scipy.differentiate)."""
    best = None
    for x0 in starts:
        res = optimize.minimize(
            nll, np.asarray(x0, float), method="BFGS", options={"gtol": 1e-8, "maxiter": 5000}
        )
        if not res.success:
            res = optimize.minimize(
                nll,
                res.x,
                method="Nelder-Mead",
                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40000},
            )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return Fit(best.x, float(best.fun), _covariance(nll, best.x))


def _covariance(nll: Callable[[np.ndarray], float], beta: np.ndarray) -> np.ndarray | None:
    def vectorised(x: np.ndarray) -> np.ndarray:  # scipy.differentiate evaluates many points
        flat = x.reshape(len(beta), -1)
        values = np.array([nll(flat[:, j]) for j in range(flat.shape[1])])
        return values.reshape(x.shape[1:])

    h = hessian(vectorised, beta, initial_step=1e-2).ddf
    if not np.all(np.isfinite(h)):
        return None
    try:
        cov = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return None
    if np.any(np.diag(cov) <= 0):
        return None
    return cov


def logit_parameter(name: str, beta: float, var: float | None) -> Parameter:
    """A probability estimated on the logit scale: estimate expit(beta), delta-method SE and
    the interval back-transformed from beta +- z SE (as MARK reports)."""
    p = float(expit(beta))
    at_boundary = not 1e-6 < p < 1 - 1e-6  # the Hessian says nothing there
    if at_boundary or var is None or not np.isfinite(var) or var <= 0:
        return Parameter(name, p)
    se = float(np.sqrt(var))
    return Parameter(
        name, p, se * p * (1 - p), float(expit(beta - Z95 * se)), float(expit(beta + Z95 * se))
    )


def n_parameter(num_caught: int, log_f0: float, var_log_f0: float | None) -> Parameter:
    """N = M + f0 from beta_0 = log f0, with the delta-method SE and Chao's log-normal
    interval (var(f0) / f0^2 = var(beta_0))."""
    f0 = float(np.exp(log_f0))
    if var_log_f0 is None or not np.isfinite(var_log_f0) or var_log_f0 <= 0:
        return Parameter("N", num_caught + f0)
    return lognormal_n(num_caught, f0, f0**2 * var_log_f0)


def lognormal_n(num_caught: float, f0: float, var_n: float, quantile: float = Z95) -> Parameter:
    """N = M + f0 with a given var(N): Chao's (1987) log-normal interval, as for her lower
    bound estimator (the interval never reaches below M); ``quantile`` replaces z (e.g. a t
    quantile for pooled imputations)."""
    n = num_caught + f0
    if f0 <= 0 or var_n <= 0:
        return Parameter("N", n, float(np.sqrt(max(var_n, 0.0))), float(n), float(n))
    c = float(np.exp(quantile * np.sqrt(np.log1p(var_n / f0**2))))
    return Parameter("N", n, float(np.sqrt(var_n)), num_caught + f0 / c, num_caught + f0 * c)


def normal_n(n: float, var_n: float, floor: float = 0.0) -> Parameter:
    """N with a symmetric normal interval N +- z SE (two-sample and Schnabel estimators, as the
    fisheries texts print them), the lower end not below ``floor``."""
    se = float(np.sqrt(max(var_n, 0.0)))
    return Parameter("N", float(n), se, max(floor, n - Z95 * se), n + Z95 * se)
