"""Distinctiveness weighting of local correspondences (LNBNN, as in HotSpotter).

A correspondence on a pattern every salamander has (a generic blotch, the eye rim) is weak
evidence that query and candidate are the same animal; one on a pattern only this candidate
shares with the query is strong. Following the local naive-Bayes nearest neighbour score of
McCann & Lowe (2012) as HotSpotter uses it (Crall et al., 2013), each matched query descriptor
q gets

    weight = max(0, d_norm - d_match)

where ``d_match`` is the distance from q to its nearest descriptor of the candidate photo and
``d_norm`` the distance to its ``k``-th nearest descriptor pooled from the shortlist's OTHER
individuals (the "normaliser": how close an arbitrary other animal comes). Distances are L2
between unit-length descriptors, in [0, 2]. A pattern that other individuals match as well as
the candidate gets ~0; a pattern matched only by the candidate keeps a weight up to 2. With
fewer than ``k`` pooled descriptors, ``d_norm`` is 2 (the diameter: nothing else comes close).

Nearest neighbours are exact (brute force, ``faiss.knn``): a query has a few thousand
descriptors and the pool a few tens of thousands, milliseconds of work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import faiss
import numpy as np

from reid.matching.local.features import Correspondences, LocalFeatures

MAX_DISTANCE = 2.0  # between unit vectors


def unit_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """(N, D) descriptors of any dtype (float16 unit, uint8 quantised) as contiguous float32
    rows of unit length (an all-zero row stays zero)."""
    d = np.ascontiguousarray(descriptors, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"descriptors must be (N, D), got shape {d.shape}")
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    return np.ascontiguousarray(d / np.where(norms > 0, norms, 1.0))


def pool_descriptors(
    features: Iterable[LocalFeatures], max_per_photo: int | None = None
) -> np.ndarray:
    """The normaliser pool: unit descriptors (P, D) float32 of several photos stacked.

    ``features`` are the photos of the shortlist's other individuals; ``max_per_photo`` keeps
    each photo's strongest keypoints only (rows are strongest first), to bound the pool.
    """
    parts = [unit_descriptors(f.descriptors[:max_per_photo]) for f in features]
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, 0), np.float32)
    dims = {p.shape[1] for p in parts}
    if len(dims) != 1:
        raise ValueError(f"photos with descriptors of different lengths {sorted(dims)}")
    return np.concatenate(parts)


def kth_distance(queries: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    """(M,) L2 distance from each unit query row (M, D) to its k-th nearest row of base (N, D);
    MAX_DISTANCE when base has fewer than k rows."""
    if len(base) < k or not len(queries):
        return np.full(len(queries), MAX_DISTANCE, np.float32)
    if base.shape[1] != queries.shape[1]:
        raise ValueError(f"descriptor lengths differ: {queries.shape[1]} and {base.shape[1]}")
    squared, _ = faiss.knn(queries, base, k)
    return np.sqrt(np.clip(squared[:, k - 1], 0.0, MAX_DISTANCE**2)).astype(np.float32)


def lnbnn_weights(
    query: LocalFeatures,
    query_idx: np.ndarray,
    candidate: LocalFeatures | np.ndarray,
    others: np.ndarray,
    *,
    k: int = 1,
) -> np.ndarray:
    """LNBNN weight of each matched query keypoint (see the module docstring).

    Args:
        query: the query photo's features (N rows).
        query_idx: (M,) int rows of ``query`` that the correspondences start from.
        candidate: the candidate photo's features, or its (Nc, D) descriptors.
        others: (P, D) descriptors pooled from the shortlist's other individuals (not the
            candidate's individual; see :func:`pool_descriptors`), any dtype.
        k: which neighbour among ``others`` is the normaliser (1 = the nearest).
    Returns:
        (M,) float32 weights in [0, 2].
    """
    idx = np.asarray(query_idx)
    if idx.ndim != 1 or (len(idx) and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"query_idx must be (M,) integers, got {idx.dtype} {idx.shape}")
    if len(idx) and (idx.min() < 0 or idx.max() >= len(query)):
        raise ValueError(f"query_idx out of range for a query of {len(query)} keypoints")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cand = candidate.descriptors if isinstance(candidate, LocalFeatures) else candidate
    q = unit_descriptors(query.descriptors[idx]) if len(idx) else np.zeros((0, 1), np.float32)
    pool = unit_descriptors(others) if len(others) else np.zeros((0, 0), np.float32)
    d_match = kth_distance(q, unit_descriptors(cand), 1)
    d_norm = kth_distance(q, pool, k)
    return np.maximum(d_norm - d_match, 0.0).astype(np.float32)


def reweight(
    corr: Correspondences,
    query: LocalFeatures,
    candidate: LocalFeatures | np.ndarray,
    others: np.ndarray,
    *,
    k: int = 1,
) -> Correspondences:
    """``corr`` with its weights multiplied by their LNBNN weights (so ``score`` becomes the
    LNBNN score). Needs ``corr.query_idx``; ValueError without it."""
    if corr.query_idx is None:
        raise ValueError("LNBNN weighting needs Correspondences.query_idx; the scorer left it out")
    w = lnbnn_weights(query, corr.query_idx, candidate, others, k=k)
    return replace(corr, weights=(corr.weights * w).astype(np.float32))
