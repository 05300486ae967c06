"""Per-individual scoring as pure numpy: unit vectors, an individual's score from its photos.

A query is compared with individuals, not photos: an individual's score is its best photo's
cosine similarity (``"max"``) or the mean of its ``score_k`` best (``"topk_mean"``, steadier when
some photos are poor).

The trials and the false-match-rate threshold live in :mod:`reid.gallery.threshold` and the NEW
rule in :mod:`reid.gallery.decide`; their names are re-exported here for existing callers.
"""

from __future__ import annotations

import numpy as np

from reid.gallery.decide import is_new
from reid.gallery.errors import GalleryError
from reid.gallery.threshold import (
    TrialScores,
    individual_scores,
    loo_trials,
    loo_trials_of,
    rates_at,
    threshold_for_fmr,
)

SCORE_MODES = ("max", "topk_mean")


def check_scoring(score_mode: str, score_k: int) -> None:
    """GalleryError unless ``score_mode`` is one of :data:`SCORE_MODES` and ``score_k`` >= 1."""
    if score_mode not in SCORE_MODES:
        raise GalleryError(f"Score mode {score_mode!r} is not one of {', '.join(SCORE_MODES)}.")
    if int(score_k) < 1:
        raise GalleryError(f"score_k must be at least 1 (got {score_k}).")


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


__all__ = [
    "SCORE_MODES",
    "TrialScores",
    "check_scoring",
    "first_per_label",
    "individual_scores",
    "is_new",
    "l2_normalize",
    "loo_trials",
    "loo_trials_of",
    "rates_at",
    "threshold_for_fmr",
    "topk_mean",
]
