"""Population size when identification is uncertain.

A capture history built from photo identification holds errors: two photos of one animal split
into two "individuals" (inflating N) or two animals merged into one (deflating it). Treating the
histories as certain, as every tool in this field does, gives an interval that is too narrow.

Two answers here, both from the calibrated pairwise probabilities that the matching stage gives
(P(same individual) for every pair of sighting photos):

- :func:`threshold_curve`: N and its interval as the grouping threshold moves across the
  calibrated false-match rates (how much the answer depends on one setting);
- :func:`error_aware_estimate`: multiple imputation. Each draw perturbs the best grouping by
  the errors identification makes, each with its calibrated probability (splits and merges,
  :func:`draw_partition`); the draw's capture histories give an estimate; the draws are
  pooled by Rubin's rules (:func:`pooled_n`), so the interval widens by as much as the
  identifications disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from reid.ecology.estimate import Estimate, Parameter, lognormal_n
from reid.matching.discover import cluster

Estimator = Callable[[np.ndarray], Estimate]


def histories_of(labels: np.ndarray, occasion_of: np.ndarray, num_occasions: int) -> np.ndarray:
    """(I, T) 0/1 capture matrix from each photo's individual label and occasion index."""
    labels = np.unique(np.asarray(labels), return_inverse=True)[1]
    matrix = np.zeros((labels.max() + 1 if len(labels) else 0, num_occasions), np.uint8)
    matrix[labels, np.asarray(occasion_of)] = 1
    return matrix


def draw_partition(p: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One imputed identification of N photos around the best grouping ``labels`` (N,), from
    their (N, N) P(same): (N,) int labels.

    The two errors photo identification makes, each drawn with its calibrated probability:
    a photo leaves its group with the probability that none of its links to the group's other
    photos is real (a split); a group joins the group it is most alike with the mean P(same)
    between them (a merge). Only the
    most alike group is considered, as ``reid match`` looks at its best candidates: the many
    small P(same) of unrelated animals do not add up to a false merge. A photo belongs with its
    group if any of its links to the group's other photos is real (noisy-OR of their P(same)):
    two independent strong links make a split unlikely, as they should."""
    p = np.asarray(p, np.float64)
    labels = np.unique(np.asarray(labels), return_inverse=True)[1]
    n, k = len(labels), int(labels.max()) + 1 if len(labels) else 0
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    sizes = onehot.sum(axis=0)
    between = onehot.T @ p @ onehot  # (K, K) sums of P between groups
    mean = between / np.maximum(np.outer(sizes, sizes), 1)
    # (N,) P(the photo belongs with its group): noisy-OR of its links to the other photos
    log_not = np.log1p(-np.clip(p, 0.0, 1 - 1e-12))
    np.fill_diagonal(log_not, 0.0)
    belongs = -np.expm1((log_not @ onehot)[np.arange(n), labels])
    parent = np.arange(k)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    np.fill_diagonal(mean, -np.inf)
    pairs = {tuple(sorted((c, int(np.argmax(mean[c]))))) for c in range(k) if k > 1}
    for a, b in sorted(pairs):
        if rng.random() < mean[a, b]:
            parent[root(a)] = root(b)
    out = np.array([root(int(c)) for c in labels])
    seen_pair: set[int] = set()
    for i in np.flatnonzero(sizes[labels] > 1):
        if sizes[labels[i]] == 2 and labels[i] not in seen_pair:
            seen_pair.add(int(labels[i]))  # a pair is one link: only its second photo draws
            continue
        if rng.random() >= belongs[i]:
            out[i] = k + i  # split off: an individual of its own
    return np.unique(out, return_inverse=True)[1]


@dataclass
class ErrorAware:
    """The naive estimate (histories from the best grouping, taken as certain) and the
    error-aware one (multiple imputation, Rubin's rules); ``draws`` each draw's N."""

    naive: Estimate
    n_hat: Parameter
    draws: list[float] = field(default_factory=list)
    failed_draws: int = 0
    between_share: float = 0.0  # share of the pooled variance that identification adds


def error_aware_estimate(
    p: np.ndarray,
    occasion_of: np.ndarray,
    num_occasions: int,
    threshold: float,
    estimator: Estimator,
    *,
    draws: int = 50,
    seed: int = 0,
    grouping: np.ndarray | None = None,
) -> ErrorAware:
    """Naive and error-aware N from photos' (N, N) P(same) and their (N,) occasion indices;
    the naive grouping is :func:`reid.matching.discover.cluster` at ``threshold`` (pass it as
    ``grouping`` when it is already computed)."""
    best = cluster(p, threshold) if grouping is None else grouping
    naive = estimator(histories_of(best, occasion_of, num_occasions))
    rng = np.random.default_rng(seed)
    estimates, within, caught, failed = [], [], [], 0
    for _ in range(draws):
        labels = draw_partition(p, best, rng)
        try:
            e = estimator(histories_of(labels, occasion_of, num_occasions))
        except ValueError:  # e.g. a draw with no recapture
            failed += 1
            continue
        if e.n_hat is None or not np.isfinite(e.n_hat.estimate):
            failed += 1
            continue
        estimates.append(e.n_hat.estimate)
        # no SE: N at its boundary (every animal caught again): the draw adds no variance
        within.append(0.0 if e.n_hat.se is None else e.n_hat.se**2)
        caught.append(float(e.extra.get("M", len(np.unique(labels)))))
    if len(estimates) < 2:
        raise ValueError(
            f"only {len(estimates)} of {draws} imputed identifications could be estimated"
        )
    return ErrorAware(
        naive,
        pooled_n(estimates, within, caught),
        estimates,
        failed,
        _between_share(estimates, within),
    )


def pooled_n(
    estimates: Sequence[float], variances: Sequence[float], caught: Sequence[float]
) -> Parameter:
    """Rubin's rules for N over imputations: the mean N, total variance W + (1 + 1/m) B
    (W the mean within-draw variance, B the variance between draws), and the interval in the
    form each draw's own has, Chao's log-normal one on the animals not caught, f0 = N - M
    (M averaged over draws), with the t quantile of Rubin's degrees of freedom: with B = 0 it
    is the single draw's interval, and identification doubt only widens it."""
    n = np.asarray(estimates, float)
    m = len(n)
    w, b = _rubin(estimates, variances)
    total = w + (1 + 1 / m) * b
    df = (m - 1) * (1 + w / ((1 + 1 / m) * b)) ** 2 if b > 0 else 1e6
    t = float(stats.t.ppf(0.975, df))
    mean, big_m = float(n.mean()), float(np.mean(caught))
    f0 = mean - big_m
    if f0 <= 1e-6 * max(mean, 1.0):  # every draw at its boundary (all animals seen again)
        return Parameter("N", mean, float(np.sqrt(total)), mean, mean + t * float(np.sqrt(total)))
    return lognormal_n(big_m, f0, total, quantile=t)


def _rubin(estimates: Sequence[float], variances: Sequence[float]) -> tuple[float, float]:
    """(W, B): the mean within-draw variance and the variance of the estimates between draws."""
    return float(np.mean(variances)), float(np.var(np.asarray(estimates, float), ddof=1))


def _between_share(estimates: Sequence[float], variances: Sequence[float]) -> float:
    """The share of the pooled variance that the identifications' disagreement adds."""
    w, b = _rubin(estimates, variances)
    b *= 1 + 1 / len(estimates)
    return b / (w + b) if w + b > 0 else 0.0


def threshold_curve(
    p: np.ndarray,
    occasion_of: np.ndarray,
    num_occasions: int,
    thresholds: Sequence[tuple[float, float]],
    estimator: Estimator,
) -> list[dict[str, float | None]]:
    """N and its interval at each (false-match rate, threshold): one row per threshold."""
    rows = []
    for fmr, threshold in thresholds:
        labels = cluster(p, threshold)
        row: dict[str, float | None] = {
            "fmr": fmr,
            "threshold": threshold,
            "individuals": float(len(np.unique(labels))),
        }
        try:
            n = estimator(histories_of(labels, occasion_of, num_occasions)).n_hat
            row.update(n_hat=n.estimate, lcl=n.lcl, ucl=n.ucl)
        except ValueError:
            row.update(n_hat=None, lcl=None, ucl=None)
        rows.append(row)
    return rows
