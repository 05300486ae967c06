"""Closed-population estimators of N from an individual x occasion capture matrix.

Likelihood models (full likelihood of Otis et al. 1978, as MARK; see :mod:`reid.ecology.estimate`):

- ``M0``: one capture probability p;
- ``Mt``: one p per occasion;
- ``Mb``: p before the first capture, c after it (a trap response);
- ``Mh2``: individual heterogeneity as a two-point mixture (Pledger 2000): a share ``pmix`` of
  the animals has p1, the rest p2.

Moment and summary estimators:

- ``chao``: Chao's (1987) lower bound for Mh, M + f1^2 / (2 f2), with her variance and the
  log-normal interval;
- ``chapman``: Lincoln-Petersen with Chapman's correction, for two occasions;
- ``schnabel``: Schnabel's multiple-census estimator (and Chapman's modification of it).

Every function takes ``ch``: (I, T) 0/1 array, one row per animal caught at least once (rows
of zeros are dropped), and returns an :class:`~reid.ecology.estimate.Estimate`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, gammaln, log_expit

from reid.ecology.estimate import (
    Estimate,
    Fit,
    Parameter,
    caught_rows,
    fit_mle,
    logit_parameter,
    lognormal_n,
    n_parameter,
    normal_n,
)

LOG_NORMAL = "95 % log-normal interval for N (Chao 1987, as MARK); logit-scale for probabilities"


def _needs_recaptures(ch: np.ndarray, model: str) -> None:
    if len(ch) == 0 or (ch.sum(axis=1) > 1).sum() == 0:
        raise ValueError(
            f"{model} needs at least one animal caught twice; these histories have "
            "no recapture, so N cannot be estimated"
        )


def _binomial(n: float, m: int) -> float:
    """log N! / (N - M)! for real N = M + f0."""
    return float(gammaln(n + 1) - gammaln(n - m + 1))


def _closed(
    model: str, fit: Fit, ch: np.ndarray, probs: list[Parameter], note: str = ""
) -> Estimate:
    var0 = None if fit.cov is None else float(fit.cov[0, 0])
    n = n_parameter(len(ch), float(fit.beta[0]), var0)
    return Estimate(
        model,
        [n, *probs],
        -fit.nll,
        len(fit.beta),
        LOG_NORMAL,
        note,
        n_hat=n,
        extra={"M": len(ch), "occasions": int(ch.shape[1])},
    )


def _logits(fit: Fit, names: list[str], start: int = 1) -> list[Parameter]:
    out = []
    for k, name in enumerate(names, start):
        var = None if fit.cov is None else float(fit.cov[k, k])
        out.append(logit_parameter(name, float(fit.beta[k]), var))
    return out


def m0(ch: np.ndarray) -> Estimate:
    """M0: log L = log N!/(N-M)! + n log p + (N T - n) log(1 - p), n all captures."""
    ch = caught_rows(ch)
    _needs_recaptures(ch, "M0")
    m, t, caps = len(ch), ch.shape[1], int(ch.sum())

    def nll(b: np.ndarray) -> float:
        n = m + np.exp(b[0])
        return -(_binomial(n, m) + caps * log_expit(b[1]) + (n * t - caps) * log_expit(-b[1]))

    fit = fit_mle(nll, [np.array([np.log(5.0), 0.0]), np.array([np.log(m), -1.0])])
    return _closed("M0", fit, ch, _logits(fit, ["p"]))


def mt(ch: np.ndarray) -> Estimate:
    """Mt: one p_j per occasion; log L = log N!/(N-M)! + sum_j n_j log p_j + (N - n_j) log(1-p_j).
    An occasion without a capture has p_j = 0 exactly (its MLE, on the boundary): it is fixed
    there and not counted as a parameter, so the others keep their standard errors."""
    ch = caught_rows(ch)
    _needs_recaptures(ch, "Mt")
    m, t = ch.shape
    n_j = ch.sum(axis=0).astype(float)
    used = np.flatnonzero(n_j > 0)
    n_used = n_j[used]

    def nll(b: np.ndarray) -> float:
        n = m + np.exp(b[0])
        terms = n_used * log_expit(b[1:]) + (n - n_used) * log_expit(-b[1:])
        return -(_binomial(n, m) + float(np.sum(terms)))

    k = len(used)
    fit = fit_mle(nll, [np.r_[np.log(5.0), np.zeros(k)], np.r_[np.log(m), np.full(k, -1.0)]])
    fitted = dict(zip(used.tolist(), _logits(fit, [f"p{j + 1}" for j in used]), strict=True))
    probs = [fitted.get(j, Parameter(f"p{j + 1}", 0.0)) for j in range(t)]
    empty = [str(j + 1) for j in range(t) if j not in fitted]
    note = f"no capture on occasion(s) {', '.join(empty)}: p fixed at 0 there" if empty else ""
    return _closed("Mt", fit, ch, probs, note=note)


def mb(ch: np.ndarray) -> Estimate:
    """Mb: p until first caught, c after (a permanent trap response)."""
    ch = caught_rows(ch)
    _needs_recaptures(ch, "Mb")
    m, t = ch.shape
    first = ch.argmax(axis=1)  # 0-based occasion of first capture
    misses_before = first.sum()
    hits_after = (ch.sum(axis=1) - 1).sum()
    misses_after = (t - first - 1).sum() - hits_after

    def nll(b: np.ndarray) -> float:
        f0 = np.exp(b[0])
        lp, l1p, lc, l1c = log_expit(b[1]), log_expit(-b[1]), log_expit(b[2]), log_expit(-b[2])
        caught = misses_before * l1p + m * lp + hits_after * lc + misses_after * l1c
        return -(_binomial(m + f0, m) + caught + f0 * t * l1p)

    fit = fit_mle(nll, [np.array([np.log(5.0), 0.0, 0.0]), np.array([np.log(m), -1.0, -1.0])])
    return _closed("Mb", fit, ch, _logits(fit, ["p", "c"]))


def mh2(ch: np.ndarray) -> Estimate:
    """Mh2: two-point mixture (Pledger 2000); an animal is in class 1 (p1) with probability
    pmix, else in class 2 (p2). Fitted with p2 <= p1 first, then freely (as wiqid and MARK)."""
    ch = caught_rows(ch)
    _needs_recaptures(ch, "Mh2")
    m, t = ch.shape
    freq = np.bincount(ch.sum(axis=1), minlength=t + 1)[1:].astype(float)  # f_1 .. f_T
    k = np.arange(t + 1)  # times caught, 0 .. T

    def log_lik(f0: float, pmix: float, lp1: np.ndarray, lp2: np.ndarray) -> float:
        # (T+1,) log P(caught k times in a given history) under the mixture
        a = np.log(pmix) + k * lp1[0] + (t - k) * lp1[1]
        b = np.log1p(-pmix) + k * lp2[0] + (t - k) * lp2[1]
        per = np.logaddexp(a, b)
        return _binomial(m + f0, m) + f0 * per[0] + float(freq @ per[1:])

    def ordered(b: np.ndarray) -> float:  # p2 = p1 * expit(b3) <= p1
        p1 = expit(b[2])
        p2 = p1 * expit(b[3])
        lp1 = np.array([np.log(p1), np.log1p(-p1)])
        lp2 = np.array([np.log(p2), np.log1p(-p2)])
        return -log_lik(np.exp(b[0]), float(expit(b[1])), lp1, lp2)

    def free(b: np.ndarray) -> float:
        lp1 = np.array([log_expit(b[2]), log_expit(-b[2])])
        lp2 = np.array([log_expit(b[3]), log_expit(-b[3])])
        pmix = float(np.clip(expit(b[1]), 1e-300, 1 - 1e-16))
        return -log_lik(np.exp(b[0]), pmix, lp1, lp2)

    first = fit_mle(
        ordered, [np.array([np.log(5.0), 0.0, 0.0, 0.0]), np.array([np.log(m), 0.0, 0.0, -1.0])]
    )
    b = first.beta.copy()
    p2 = expit(b[2]) * expit(b[3])
    b[3] = np.log(p2 / (1 - p2))
    fit = fit_mle(free, [b])
    return _closed(
        "Mh2",
        fit,
        ch,
        _logits(fit, ["pmix", "p1", "p2"]),
        note="the upper interval limit of a mixture is often wide: N is weakly "
        "identified when some animals are rarely caught",
    )


def chao(ch: np.ndarray) -> Estimate:
    """Chao's (1987) lower bound for Mh: N = M + f1^2 / (2 f2) (f_k animals caught k times),
    variance f2 [ (f1/f2)^4 / 4 + (f1/f2)^3 + (f1/f2)^2 / 2 ], log-normal interval."""
    ch = caught_rows(ch)
    m = len(ch)
    times = ch.sum(axis=1)
    f1, f2 = int((times == 1).sum()), int((times == 2).sum())
    if f2 == 0:
        raise ValueError(
            "Chao's estimator needs an animal caught exactly twice (f2 = 0); try --model mh2 or m0"
        )
    r = f1 / f2
    f0 = f1**2 / (2 * f2)
    var = f2 * (r**4 / 4 + r**3 + r**2 / 2)
    n = lognormal_n(m, f0, var)
    return Estimate(
        "Chao (Mh lower bound)",
        [n],
        None,
        0,
        LOG_NORMAL,
        n_hat=n,
        extra={"M": m, "f1": f1, "f2": f2, "occasions": int(ch.shape[1])},
    )


def chapman_counts(marked: int, caught: int, recaptured: int) -> Estimate:
    """Lincoln-Petersen with Chapman's correction from M marked on the first occasion, n caught
    on the second and m of them marked: N = (M+1)(n+1)/(m+1) - 1, Seber's variance
    (M+1)(n+1)(M-m)(n-m) / ((m+1)^2 (m+2)), normal 95 % interval."""
    big_m, n, m = int(marked), int(caught), int(recaptured)
    if min(big_m, n, m) < 0 or m > min(big_m, n):
        raise ValueError(f"recaptured m = {m} must be between 0 and min(M = {big_m}, n = {n})")
    est = (big_m + 1) * (n + 1) / (m + 1) - 1
    var = (big_m + 1) * (n + 1) * (big_m - m) * (n - m) / ((m + 1) ** 2 * (m + 2))
    floor = big_m + n - m  # animals known to exist
    par = normal_n(est, var, floor=floor)
    petersen = big_m * n / m if m else float("inf")
    return Estimate(
        "Chapman",
        [par],
        None,
        0,
        "normal 95 % interval (Seber 1982)",
        n_hat=par,
        extra={"M": big_m, "n": n, "m": m, "petersen": petersen},
    )


def chapman(ch: np.ndarray) -> Estimate:
    """:func:`chapman_counts` from a two-occasion capture matrix."""
    ch = caught_rows(ch)
    if ch.shape[1] != 2:
        raise ValueError(
            f"Chapman's estimator is for two occasions; these histories have "
            f"{ch.shape[1]}: use schnabel or a likelihood model (m0, mt, mb, mh2)"
        )
    return chapman_counts(
        int(ch[:, 0].sum()), int(ch[:, 1].sum()), int((ch[:, 0] & ch[:, 1]).sum())
    )


def schnabel_counts(caught: np.ndarray, recaptures: np.ndarray, at_large: np.ndarray) -> Estimate:
    """Schnabel's estimator N = sum C_t M_t / sum R_t (C_t caught, R_t of them marked, M_t
    marked at large before sample t), with a normal interval on 1 / N (variance sum R_t /
    (sum C_t M_t)^2, Seber 1982; the upper end is infinite when that interval reaches 0), and
    Chapman's modification sum C_t M_t / (sum R_t + 1) beside it."""
    c, r, mt_ = (np.asarray(x, float) for x in (caught, recaptures, at_large))
    if not (len(c) == len(r) == len(mt_)) or len(c) < 2:
        raise ValueError("Schnabel needs C_t, R_t and M_t for at least two samples")
    sum_cm, sum_r = float(c @ mt_), float(r.sum())
    if sum_r == 0:
        raise ValueError("Schnabel needs at least one recapture (all R_t are 0)")
    n_schnabel = sum_cm / sum_r
    n_mod = sum_cm / (sum_r + 1)
    var_inv = sum_r / sum_cm**2  # var(1/N) for the Poisson approximation
    lo, hi = (
        1 / (1 / n_schnabel + 1.96 * np.sqrt(var_inv)),
        1 / (1 / n_schnabel - 1.96 * np.sqrt(var_inv))
        if 1 / n_schnabel > 1.96 * np.sqrt(var_inv)
        else float("inf"),
    )
    par = Parameter("N", n_schnabel, float(n_schnabel**2 * np.sqrt(var_inv)), float(lo), float(hi))
    return Estimate(
        "Schnabel",
        [par, Parameter("N (Chapman-modified)", n_mod)],
        None,
        0,
        "normal interval on 1/N (Seber 1982)",
        n_hat=par,
        extra={"sum_CM": sum_cm, "sum_R": sum_r},
    )


def schnabel(ch: np.ndarray) -> Estimate:
    """:func:`schnabel_counts` from a capture matrix (every caught animal is marked and
    returned)."""
    ch = caught_rows(ch)
    caught = ch.sum(axis=0)
    before = np.cumsum(ch, axis=1) - ch  # times caught before occasion t
    recaptured = ((before > 0) & (ch == 1)).sum(axis=0)
    at_large = (before > 0).sum(axis=0)
    return schnabel_counts(caught, recaptured, at_large)


CLOSED_MODELS = {
    "chapman": chapman,
    "schnabel": schnabel,
    "m0": m0,
    "mt": mt,
    "mb": mb,
    "mh2": mh2,
    "chao": chao,
}
SURVEY_MODELS = ("m0", "mt", "mb", "mh2", "chao")
"""The closed models that estimate from capture histories alone (``reid survey --estimator``);
Chapman and Schnabel need marks counted per occasion."""
