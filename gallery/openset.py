"""Open-set maths as pure numpy: per-individual scores, the NEW decision and calibration.

A query is compared with individuals, not photos: an individual's score is its best photo's
cosine similarity (``"max"``) or the mean of its ``score_k`` best (``"topk_mean"``, steadier when
some photos are poor). The decision is the best individual unless its score is below the
calibrated threshold, in which case it is NEW.

Calibration is leave-one-individual-out on the gallery itself. Every photo q of individual i
yields an UNKNOWN trial (score q against everyone but i: i plays a never-seen animal, so the best
score is an impostor score) and, when i has photos in other sightings, a KNOWN trial (score q
against the gallery minus q's own sighting, because consecutive frames of one encounter are
near-duplicates that would flatter the result).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORE_MODES = ("max", "topk_mean")
SIMS_PER_CHUNK = 1 << 25  # similarity entries per query chunk: 128 MiB of float32


def l2_normalize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length.

    Args:
        vectors: (N, D) any real dtype.
    Returns:
        (N, D) float32 unit rows, and (N,) bool, False for rows that are zero or not finite
        (those rows are left as zeros).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    ok = np.isfinite(norms) & (norms > 1e-12) & np.isfinite(vectors).all(axis=1)
    out = np.zeros_like(vectors)
    out[ok] = vectors[ok] / norms[ok, None]
    return out, ok


def first_per_label(sims: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each label's first (= best) neighbour in a best-first neighbour list.

    Args:
        sims: (K,) float32 similarities, sorted best first.
        labels: (K,) int individual index per neighbour; negative means "no neighbour".
    Returns:
        labels (L,) int and positions (L,) int into the input, ordered best first.
    """
    valid = np.flatnonzero(labels >= 0)
    uniq, first = np.unique(labels[valid], return_index=True)
    positions = valid[first]
    order = np.lexsort((positions, -sims[positions]))  # by score; ties keep neighbour order
    return uniq[order], positions[order]


def topk_mean(sims: np.ndarray, score_k: int) -> float:
    """Mean of the ``score_k`` largest of ``sims`` (n,); of all of them when n < score_k."""
    if len(sims) == 0:
        return float("-inf")
    k = min(score_k, len(sims))
    return float(np.mean(np.partition(sims, len(sims) - k)[len(sims) - k :]))


def is_new(score: float, threshold: float | None) -> bool:
    """The open-set decision: NEW when calibrated and the best score is below the threshold."""
    return threshold is not None and score < threshold


def threshold_for_fmr(impostor_scores: np.ndarray, target_fmr: float) -> float:
    """The smallest threshold whose false-match rate is at most ``target_fmr``.

    FMR(t) = fraction of impostor scores >= t. With m = floor(target * n) false matches allowed,
    the answer is just above the (m+1)-th largest impostor score.

    Args:
        impostor_scores: (n,) float, n >= 1.
        target_fmr: in (0, 1).
    """
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float32))[::-1]
    allowed = int(np.floor(target_fmr * len(scores) + 1e-9))
    if allowed >= len(scores):
        return float(scores[-1])
    return float(np.nextafter(scores[allowed], np.float32(np.inf)))


@dataclass(frozen=True)
class TrialScores:
    """Outcome of leave-one-individual-out trials.

    ``known_scores`` (K,) float32 best-individual score of each known trial, ``known_correct``
    (K,) bool whether that best individual was the right one, ``impostor_scores`` (U,) float32
    best score of each unknown trial.
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
        score_mode, score_k: how an individual is scored (see the module docstring).
        queries: (Q,) int rows used as queries (all rows when None).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    order = np.argsort(labels, kind="stable")  # individuals become contiguous column blocks
    sorted_vectors, sorted_groups = vectors[order], groups[order]
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    queries = np.arange(len(vectors)) if queries is None else np.asarray(queries)
    chunk = max(1, SIMS_PER_CHUNK // max(1, len(vectors)))
    known_scores, known_correct, impostors = [], [], []
    for begin in range(0, len(queries), chunk):
        rows = queries[begin : begin + chunk]
        sims = vectors[rows] @ sorted_vectors.T  # (C, N)
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
