"""Open-set thresholds on any score: the false-match-rate rule, and a gallery's calibration.

A threshold separates "one of the known individuals" from NEW. It is chosen on trials: KNOWN
trials (a query whose individual is in the gallery: its best score and whether that best
candidate was right) and UNKNOWN trials (a query playing a never-seen animal: its best score is
an impostor score). :func:`fit_threshold` works on any such trial scores (cosine similarities
today, a fused match probability tomorrow); :func:`loo_trials` makes them from a gallery's own
vectors by leave-one-individual-out, and :func:`run_calibration` stores the result in a gallery.

Leave-one-individual-out: every photo q of individual i yields an UNKNOWN trial (score q against
everyone but i: i plays a never-seen animal) and, when i has photos in other sightings, a KNOWN
trial (score q against the gallery minus q's own sighting, because consecutive frames of one
encounter are near-duplicates that would flatter the result).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reid.gallery import catalog
from reid.gallery.errors import GalleryError
from reid.gallery.records import Calibration, ThresholdFit
from reid.gallery.store import WriteTxn, get_setting, set_setting, utc_now

SIMS_PER_CHUNK = 1 << 25  # similarity entries per query chunk: 128 MiB of float32


def threshold_for_fmr(
    impostor_scores: np.ndarray,
    target_fmr: float,
    *,
    lowest: float | None = None,
    dtype: type[np.floating] = np.float32,
) -> float:
    """The smallest threshold whose false-match rate is at most ``target_fmr``.

    FMR(t) = fraction of impostor scores >= t. With m = floor(target * n) false matches allowed,
    the answer is the smallest ``dtype`` number strictly above the (m+1)-th largest impostor
    score, so ties never push the rate above the target. When every impostor may pass
    (m >= n), the answer is ``lowest`` (default: the lowest impostor score).

    Args:
        impostor_scores: (n,) float, n >= 1, the best score of each unknown trial.
        target_fmr: in [0, 1].
        lowest: the threshold when every impostor may pass, e.g. the lowest score of all trials.
        dtype: the precision scores are compared in (the gallery's cosines are float32).
    """
    scores = np.sort(np.asarray(impostor_scores, dtype=dtype))[::-1]
    if not len(scores):
        raise ValueError("threshold_for_fmr needs at least one impostor score")
    allowed = int(np.floor(target_fmr * len(scores) + 1e-9))  # 0.29 * 100 is 28.999999999999996
    if allowed >= len(scores):
        return float(scores[-1] if lowest is None else lowest)
    return float(np.nextafter(scores[allowed], dtype(np.inf)))


@dataclass(frozen=True)
class TrialScores:
    """Outcome of open-set trials, on any score where higher means "more likely the same".

    ``known_scores`` (K,) float32 best-candidate score of each known trial, ``known_correct``
    (K,) bool whether that best candidate was the right individual, ``impostor_scores`` (U,)
    float32 best score of each unknown trial.
    """

    known_scores: np.ndarray
    known_correct: np.ndarray
    impostor_scores: np.ndarray


def rates_at(trials: TrialScores, threshold: float) -> tuple[float, float, float]:
    """(FMR, TPR, rank-1) at ``threshold``: TPR counts known trials right AND >= threshold."""
    fmr = float(np.mean(trials.impostor_scores >= threshold))
    if len(trials.known_scores) == 0:
        return fmr, 0.0, 0.0
    accepted = trials.known_correct & (trials.known_scores >= threshold)
    return fmr, float(np.mean(accepted)), float(np.mean(trials.known_correct))


def fit_threshold(trials: TrialScores, target_fmr: float) -> ThresholdFit:
    """The threshold at ``target_fmr`` on the trials' impostor scores, with its rates.

    Works on any score: a caller with its own known/unknown trials (a re-ranker's probabilities,
    a held-out set) calibrates exactly as a gallery does on its stored vectors.
    """
    threshold = threshold_for_fmr(trials.impostor_scores, target_fmr)
    fmr, tpr, rank1 = rates_at(trials, threshold)
    return ThresholdFit(
        threshold, target_fmr, fmr, tpr, rank1,
        int(len(trials.known_scores)), int(len(trials.impostor_scores)),
    )  # fmt: skip


def loo_trials(
    vectors: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    score_mode: str = "max",
    score_k: int = 3,
    queries: np.ndarray | None = None,
) -> TrialScores:
    """Run the known and unknown trials of every query photo against the rest of the gallery.

    Args:
        vectors: (N, D) float32, L2-normalised gallery vectors.
        labels: (N,) int individual index in [0, I).
        groups: (N,) int sighting group; photos of one individual in one sighting share a group,
            a photo without a recorded sighting has a group of its own.
        score_mode, score_k: how an individual is scored (see :mod:`reid.gallery.openset`).
        queries: (Q,) int rows used as queries (all rows when None).
    """
    return loo_trials_of(
        lambda rows, columns: vectors[rows] @ vectors[columns].T,
        labels, groups, score_mode=score_mode, score_k=score_k, queries=queries,
    )  # fmt: skip


def loo_trials_of(
    pair_scores: Callable[[np.ndarray, np.ndarray], np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    score_mode: str = "max",
    score_k: int = 3,
    queries: np.ndarray | None = None,
) -> TrialScores:
    """:func:`loo_trials` on any pair score (a re-ranker's, a fused probability): ``pair_scores
    (rows (C,), columns (N,))`` gives the (C, N) scores of gallery photos ``rows`` against
    ``columns``, higher meaning more likely the same individual (-inf: not comparable)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    order = np.argsort(labels, kind="stable")  # individuals become contiguous column blocks
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    queries = np.arange(len(labels)) if queries is None else np.asarray(queries)
    chunk = max(1, SIMS_PER_CHUNK // max(1, len(labels)))
    known_scores, known_correct, impostors = [], [], []
    for begin in range(0, len(queries), chunk):
        rows = queries[begin : begin + chunk]
        sims = np.array(pair_scores(rows, order), dtype=np.float32)  # (C, N), a fresh copy
        sims[groups[rows][:, None] == sorted_groups[None, :]] = -np.inf  # own sighting, self
        scores = individual_scores(sims, starts, score_mode, score_k)  # (C, I)
        own = labels[rows]
        has_known = np.isfinite(scores[np.arange(len(rows)), own])
        best = np.argmax(scores, axis=1)
        known_scores.append(scores[np.arange(len(rows)), best][has_known])
        known_correct.append((best == own)[has_known])
        scores[np.arange(len(rows)), own] = -np.inf  # i plays a never-seen animal
        impostors.append(scores.max(axis=1))
    return TrialScores(
        np.concatenate(known_scores).astype(np.float32),
        np.concatenate(known_correct),
        np.concatenate(impostors).astype(np.float32),
    )


def individual_scores(sims: np.ndarray, starts: np.ndarray, score_mode: str, score_k: int):
    """Per-individual scores from photo similarities.

    Args:
        sims: (C, N) float32, columns grouped by individual; -inf marks excluded photos.
        starts: (I,) int first column of each individual's block.
    Returns:
        (C, I) float32; -inf for an individual with no photo left.
    """
    if score_mode == "max":
        return np.maximum.reduceat(sims, starts, axis=1)
    ends = np.r_[starts[1:], sims.shape[1]]
    out = np.empty((sims.shape[0], len(starts)), dtype=np.float32)
    for j, (begin, end) in enumerate(zip(starts, ends, strict=True)):
        block = -np.sort(-sims[:, begin:end], axis=1)[:, :score_k]  # best first, -inf last
        finite = np.isfinite(block)
        count = finite.sum(axis=1)
        total = np.where(finite, block, 0.0).sum(axis=1)
        out[:, j] = np.where(count > 0, total / np.maximum(count, 1), -np.inf)
    return out


# ---------------------------------------- a gallery's calibration
def run_calibration(
    txn: WriteTxn,
    directory: Path,
    *,
    target_fmr: float,
    score_mode: str,
    score_k: int,
    max_queries: int,
    seed: int,
    trained_individuals: Collection[str] | None = None,
) -> Calibration:
    """Measure and store the threshold inside the write transaction ``txn``."""
    dim = int(get_setting(txn.conn, "embedding_dim", "0"))
    vectors, labels, groups, names = catalog.load_calibration_inputs(txn.conn, dim)
    num_individuals = len(names)
    check_calibratable(directory, labels, groups, num_individuals)
    queries = None
    if len(vectors) > max_queries:  # the (Q, N) similarities grow quadratically: sample Q
        rng = np.random.default_rng(seed)
        queries = np.sort(rng.choice(len(vectors), size=max_queries, replace=False))
    trials = loo_trials(
        vectors, labels, groups, score_mode=score_mode, score_k=score_k, queries=queries
    )
    used = queries if queries is not None else np.arange(len(vectors))
    pool, pool_mask = unknown_pool(names, labels[used], trained_individuals)
    trials = TrialScores(
        trials.known_scores, trials.known_correct, trials.impostor_scores[pool_mask]
    )
    fit = fit_threshold(trials, target_fmr)
    result = Calibration(
        **asdict(fit),
        num_individuals=num_individuals,
        num_images=int(len(vectors)),
        score_mode=score_mode,
        score_k=score_k,
        sampled=queries is not None,
        seed=seed,
        model_fingerprint=str(get_setting(txn.conn, "model_fingerprint")),
        generation=txn.generation,
        at=utc_now(),
        unknown_pool=pool,
        num_unknown_individuals=len(np.unique(labels[used][pool_mask])),
    )
    for key, value in {
        "threshold": repr(fit.threshold),
        "target_fmr": repr(target_fmr),
        "score_mode": score_mode,
        "score_k": score_k,
        "calibration": json.dumps(result.to_dict()),
    }.items():
        set_setting(txn.conn, key, value)
    txn.details.update(result.to_dict())
    return result


def check_calibratable(
    directory: Path, labels: np.ndarray, groups: np.ndarray, num_individuals: int
) -> None:
    """GalleryError unless there are >= 2 individuals and one has >= 2 sightings' photos."""
    if num_individuals < 2:
        raise GalleryError(
            f"Calibrating gallery {directory} needs at least 2 individuals and it has "
            f"{num_individuals}; enroll {2 - num_individuals} more individual(s) first."
        )
    sightings_per_individual = np.bincount(labels[np.unique(groups, return_index=True)[1]])
    if sightings_per_individual.max(initial=0) < 2:
        raise GalleryError(
            f"Calibrating gallery {directory} needs at least one individual with photos from 2 "
            f"different sightings and none has; enroll another sighting of any individual first."
        )


# Fewer never-trained individuals than this and their impostor scores say too little: the
# calibration falls back to every individual and is marked optimistic.
MIN_NEVER_TRAINED = 2


def unknown_pool(
    names: list[str], query_labels: np.ndarray, trained_individuals: Collection[str] | None
) -> tuple[str, np.ndarray]:
    """Which queries' unknown trials count, and how to describe that pool.

    A leave-one-individual-out impostor score is only a fair stand-in for a never-seen animal if
    the embedding model never saw that individual in training: a model pulls the photos of its
    training individuals tightly together and away from the others, so their impostor scores
    run low and a threshold set on them lets real newcomers through. When the caller says which
    individuals the model was trained on and the gallery holds at least ``MIN_NEVER_TRAINED``
    others, only those others play the unknown animal.

    Args:
        names: (I,) individual ids by label.
        query_labels: (Q,) int label of each query, in trial order.
    Returns:
        ("never-trained" | "trained" | "unspecified", (Q,) bool mask of counted queries).
    """
    everyone = np.ones(len(query_labels), dtype=bool)
    if trained_individuals is None:
        return "unspecified", everyone
    trained = set(trained_individuals)
    fresh_labels = np.array([j for j, name in enumerate(names) if name not in trained])
    mask = np.isin(query_labels, fresh_labels)
    if len(fresh_labels) >= MIN_NEVER_TRAINED and mask.any():
        return "never-trained", mask
    return "trained", everyone
