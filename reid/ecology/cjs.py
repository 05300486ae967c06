"""Cormack-Jolly-Seber survival: apparent survival phi between occasions and recapture
probability p, conditional on first capture (Lebreton et al. 1992), by maximum likelihood.

An animal first caught on occasion f and last on l contributes

    prod_{j=f}^{l-1} phi_j * prod_{j=f+1}^{l} p_j^{x_j} (1 - p_j)^{1 - x_j} * chi_l,

chi_T = 1, chi_j = (1 - phi_j) + phi_j (1 - p_{j+1}) chi_{j+1} (never seen after l). Each of
phi and p is constant (``"."``) or occasion-specific (``"t"``). In phi(t)p(t) the last phi and
the last p are not separately estimable: their product beta = phi_{T-1} p_T is (reported as
``phi*p last``; MARK reports the pair with one of them at a boundary), and the model has
2T - 3 parameters. The log-likelihood holds no constant, so -2 log L and AIC compare with
MARK's and with R's ``marked``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, xlogy

from reid.ecology.estimate import Estimate, caught_rows, fit_mle, logit_parameter

MODES = (".", "t")
INTERVAL = "95 % intervals on the logit scale, back-transformed (as MARK); SE by the delta method"


def cjs(ch: np.ndarray, phi: str = ".", p: str = ".") -> Estimate:
    """Fit phi(``phi``) p(``p``) to ``ch``: (I, T) 0/1, one row per animal (rows of zeros are
    dropped; animals first caught on the last occasion carry no information and are ignored).
    """
    if phi not in MODES or p not in MODES:
        raise ValueError(f"phi and p must each be one of {MODES}, not {phi!r}, {p!r}")
    ch = caught_rows(ch)
    t = ch.shape[1]
    if t < 3:
        raise ValueError(f"CJS needs at least 3 occasions; these histories have {t}")
    first, last = ch.argmax(axis=1), t - 1 - ch[:, ::-1].argmax(axis=1)
    keep = first < t - 1
    ch, first, last = ch[keep], first[keep], last[keep]
    if len(ch) == 0:
        raise ValueError("no animal was caught before the last occasion: nothing to estimate")
    confounded = phi == "t" and p == "t"
    k_phi = t - 1 if phi == "t" else 1
    k_p = (t - 2 if confounded else t - 1) if p == "t" else 1
    # sufficient statistics, so the likelihood is a few array operations per evaluation
    cols = np.arange(t)
    between = (cols > first[:, None]) & (cols <= last[:, None])  # (I, T) after first, to last
    survived = between[:, 1:].sum(axis=0)  # (T-1,) phi_j factors: j -> j+1 within first..last
    seen = (ch.astype(bool) & between)[:, 1:].sum(axis=0)  # (T-1,) p_{j+1} successes
    missed = (~ch.astype(bool) & between)[:, 1:].sum(axis=0)  # (T-1,) p_{j+1} failures
    lasts = np.bincount(last, minlength=t)  # animals last seen on each occasion

    def expand(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        phis = np.broadcast_to(expit(b[:k_phi]), (t - 1,)).astype(float)
        ps = expit(b[k_phi:])
        if confounded:  # p_T = 1 and phi_{T-1} = beta: the product is what the data identify
            ps = np.r_[ps, 1.0]
        return phis, np.broadcast_to(ps, (t - 1,)).astype(float)

    def nll(b: np.ndarray) -> float:
        phis, ps = expand(b)  # phis[j]: j -> j+1; ps[j]: p on occasion j+1
        chi = np.ones(t)
        for j in range(t - 2, -1, -1):
            chi[j] = (1 - phis[j]) + phis[j] * (1 - ps[j]) * chi[j + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = _xlogy(survived, phis) + _xlogy(seen, ps) + _xlogy(missed, 1 - ps)
            ll += _xlogy(lasts, chi)
        return float(-ll) if np.isfinite(ll) else 1e300

    k = k_phi + k_p
    fit = fit_mle(nll, [np.zeros(k), np.full(k, 0.5)])
    var = np.full(k, np.nan) if fit.cov is None else np.diag(fit.cov)
    params = []
    for j in range(k_phi):
        name = "phi" if phi == "." else f"phi{j + 1}"
        if confounded and j == t - 2:
            name = f"phi{j + 1}*p{t}"
        params.append(logit_parameter(name, float(fit.beta[j]), float(var[j])))
    for j in range(k_p):
        name = "p" if p == "." else f"p{j + 2}"
        params.append(logit_parameter(name, float(fit.beta[k_phi + j]), float(var[k_phi + j])))
    return Estimate(
        f"CJS phi({phi}) p({p})",
        params,
        -fit.nll,
        k,
        INTERVAL,
        extra={"animals": int(len(ch)), "occasions": t},
    )


def _xlogy(counts: np.ndarray, probs: np.ndarray) -> float:
    """sum counts * log(probs), 0 where a count is 0 (a fixed p = 1 is then no -inf)."""
    return float(np.sum(xlogy(counts, probs)))
