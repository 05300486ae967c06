"""Fusing calibrated scorers, and from fused photo pairs to per-individual scores and trials.

Each scorer's raw scores are first calibrated to P(same individual) per (query, gallery photo)
pair (:class:`reid.matching.calibration.PairCalibrator`); :func:`fuse` combines those (Q, G)
probability matrices into one. NaN marks a pair a scorer did not score (a local scorer runs on
the global shortlist only).

Rules:

- ``"mean"`` (the baseline): the weighted mean of the probabilities present. It stays a
  probability on the same scale, and is robust when the scorers see the same evidence (SIFT and
  XFeat match the same skin pattern), which a product would count twice.
- ``"logodds"``: ``logit(p) = bias + sum_s w_s logit(p_s)`` over the scorers present (a missing
  scorer adds no evidence). With unit weights and no bias it is the naive-Bayes product of odds
  (exact for conditionally independent scorers calibrated on balanced pairs, overconfident for
  correlated ones); :func:`fit_logodds` learns the weights and bias (logistic stacking) on pairs
  of known truth, which discounts correlated scorers. Not shown to beat the mean yet: measure on
  held-out pairs before switching (real scorers' correlation decides it).

The fused (Q, G) matrix is a similarity like any other: :func:`individual_scores` takes the best
photo per individual (the ``max`` rule of :func:`reid.evaluation.metrics.openset_scores` and of
the gallery's ``score_mode="max"``), and :func:`reid.evaluation.metrics.openset_metrics` accepts
``as_similarity(fused)`` directly (it needs finite values, hence the NaN fill; probabilities are
a monotone score, so AUROC, TPR at FMR, OSCR, rank-k and mAP all apply). :func:`fused_trials`
turns the per-individual scores into :class:`reid.gallery.threshold.TrialScores`, so
``fit_threshold(fused_trials(...), target_fmr)`` calibrates the NEW threshold on the fused score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reid.gallery.threshold import TrialScores
from reid.matching.calibration import fit_logistic, sigmoid

RULES = ("mean", "logodds")
EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before taking log-odds


def _stack(probs: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Scorer names (S,) and their probabilities stacked (S, ...) float64; ValueError on
    an empty mapping, unequal shapes or values outside [0, 1]."""
    if not probs:
        raise ValueError("fuse needs at least one scorer's probabilities")
    names = list(probs)
    arrays = [np.asarray(probs[n], dtype=np.float64) for n in names]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"all scorers' probabilities must have one shape, got {sorted(shapes)}")
    stacked = np.stack(arrays)
    present = stacked[~np.isnan(stacked)]
    if present.size and (present.min() < 0 or present.max() > 1):
        raise ValueError("probabilities must lie in [0, 1] (NaN marks a pair not scored)")
    return names, stacked


def _weights(names: Sequence[str], weights: Mapping[str, float] | None) -> np.ndarray:
    """(S,) float64 weight per scorer (1.0 when ``weights`` is None); ValueError on a missing
    or unknown name or a negative weight."""
    if weights is None:
        return np.ones(len(names))
    if set(weights) != set(names):
        raise ValueError(f"weights name {sorted(weights)}, probabilities name {sorted(names)}")
    w = np.array([float(weights[n]) for n in names])
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be finite and >= 0, got {dict(weights)}")
    return w


def logit(p: Any) -> np.ndarray:
    """log(p / (1 - p)) of p clipped to [EPS, 1 - EPS]; NaN stays NaN. Any shape."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fuse(
    probs: Mapping[str, Any],
    rule: str = "mean",
    weights: Mapping[str, float] | None = None,
    *,
    bias: float = 0.0,
) -> np.ndarray:
    """One P(same) per pair from several scorers' calibrated probabilities.

    Args:
        probs: scorer name -> (Q, G) (any shape, the same for all) probabilities in [0, 1];
            NaN where that scorer did not score the pair.
        rule: ``"mean"`` (weighted mean over the scorers present) or ``"logodds"``
            (``sigmoid(bias + sum_s w_s logit(p_s))`` over the scorers present).
        weights: scorer name -> weight >= 0 (default 1 each); every scorer must be named.
        bias: ``"logodds"`` only (see :func:`fit_logodds`).
    Returns:
        (Q, G) float64 in [0, 1]; NaN where no scorer (with weight > 0, for the mean) scored.
    """
    names, stacked = _stack(probs)
    w = _weights(names, weights).reshape((-1,) + (1,) * (stacked.ndim - 1))
    present = ~np.isnan(stacked)
    if rule == "mean":
        total = np.where(present, w, 0.0).sum(axis=0)
        summed = np.where(present, w * np.nan_to_num(stacked), 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, summed / total, np.nan)
    if rule == "logodds":
        evidence = np.where(present, w * logit(np.nan_to_num(stacked)), 0.0).sum(axis=0)
        return np.where(present.any(axis=0), sigmoid(bias + evidence), np.nan)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def fit_logodds(
    probs: Mapping[str, Any], same: Any, *, nonnegative: bool = True
) -> tuple[dict[str, float], float]:
    """Logistic stacking: the weights and bias of the ``"logodds"`` rule, fitted on pairs.

    Args:
        probs: scorer name -> (N,) calibrated probabilities of N pairs (NaN: not scored, which
            counts as no evidence, as in :func:`fuse`). same: (N,) bool truth.
        nonnegative: clip negative weights to 0 (a calibrated scorer should never count
            against sameness; a negative weight is an artefact of correlated scorers).
    Returns:
        (weights by scorer name, bias), to pass to ``fuse(probs, "logodds", weights, bias=...)``.
    """
    names, stacked = _stack(probs)
    y = np.asarray(same).astype(bool)
    if stacked.ndim != 2 or y.shape != stacked.shape[1:]:
        raise ValueError(f"need (N,) probabilities and (N,) same, got {stacked.shape}, {y.shape}")
    if y.all() or not y.any():
        raise ValueError("fit_logodds needs both same-individual and different-individual pairs")
    features = np.where(np.isnan(stacked), 0.0, logit(np.nan_to_num(stacked))).T  # (N, S)
    w, b = fit_logistic(features, y.astype(np.float64), ridge=1e-3)
    if nonnegative:
        w = np.maximum(w, 0.0)
        b = _refit_bias(features @ w, y)
    return {n: float(v) for n, v in zip(names, w, strict=True)}, float(b)


def _refit_bias(evidence: np.ndarray, y: np.ndarray, iters: int = 50) -> float:
    """The bias maximising the likelihood of y (N,) given fixed evidence (N,) (Newton, 1-D)."""
    b = 0.0
    for _ in range(iters):
        p = sigmoid(evidence + b)
        step = (p - y).sum() / max(float((p * (1 - p)).sum()), 1e-12)
        b -= step
        if abs(step) < 1e-10:
            break
    return b


# ------------------------------------------------------- photos -> individuals -> decisions
def as_similarity(fused: Any, fill: float = 0.0) -> np.ndarray:
    """(Q, G) fused probabilities with NaN (pair unscored) replaced by ``fill``: a finite
    similarity matrix for :func:`reid.evaluation.metrics.openset_metrics`. The default 0 reads
    "outside the shortlist" as "not the same individual"."""
    return np.where(np.isnan(fused), fill, np.asarray(fused, dtype=np.float64))


def individual_scores(
    fused: Any, gallery_labels: Sequence[Any], fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's score for each gallery individual: the best of the individual's photos.

    Args:
        fused: (Q, G) fused probabilities (NaN: unscored, read as ``fill``).
        gallery_labels: (G,) individual of each gallery photo.
    Returns:
        individuals (I,) the sorted unique labels (object array) and scores (Q, I) float64:
        the same individuals and values as
        ``reid.evaluation.metrics.openset_scores(as_similarity(fused, fill), gallery_labels)``.
    """
    sims = as_similarity(fused, fill)
    if sims.ndim != 2 or sims.shape[1] != len(gallery_labels) or not sims.size:
        raise ValueError(f"fused {sims.shape} needs one column per gallery label")
    labels = np.empty(len(gallery_labels), dtype=object)
    labels[:] = list(gallery_labels)
    individuals = np.empty(len(set(labels)), dtype=object)
    individuals[:] = sorted(set(labels))
    index = {lab: i for i, lab in enumerate(individuals)}
    inv = np.fromiter((index[lab] for lab in labels), dtype=np.intp, count=len(labels))
    perm = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[perm], np.arange(len(individuals)))
    return individuals, np.maximum.reduceat(sims[:, perm], starts, axis=1)


def fused_trials(
    fused: Any, gallery_labels: Sequence[Any], query_labels: Sequence[Any], fill: float = 0.0
) -> TrialScores:
    """Open-set trials on the fused score, for :func:`reid.gallery.threshold.fit_threshold`.

    A query whose label is a gallery individual is a KNOWN trial (its best individual's score
    and whether that individual is right); any other query is an UNKNOWN trial (its best score
    is an impostor score). Ties go to the individual that sorts first, as in ``openset_metrics``.

    Args:
        fused: (Q, G) fused probabilities; gallery_labels: (G,); query_labels: (Q,).
    """
    individuals, scores = individual_scores(fused, gallery_labels, fill)
    if len(query_labels) != scores.shape[0]:
        raise ValueError(f"{len(query_labels)} query labels for {scores.shape[0]} fused rows")
    best = np.argmax(scores, axis=1)  # first maximum: the individual that sorts first
    best_score = scores[np.arange(len(best)), best].astype(np.float32)
    known_set = set(individuals)
    known = np.array([lab in known_set for lab in query_labels], dtype=bool)
    correct = np.array([individuals[b] == lab for b, lab in zip(best, query_labels, strict=True)])
    return TrialScores(best_score[known], correct[known].astype(bool), best_score[~known])
