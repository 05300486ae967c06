"""Search: from query vectors to candidate individuals with their cosine scores, no threshold.

The first of three steps (search -> re-rank -> decide, see :mod:`reid.gallery.decide`).

A query needs its ``top_k`` best *individuals*, but the index returns photos, and one individual
may own many of the nearest photos. So we search k photos, rank individuals, and search again
with a larger k for the queries whose answer could still change: an individual not yet seen has
no photo above the k-th similarity, so once the ``top_k``-th ranked individual scores at least
that much (or the whole gallery was searched), the ranking is final.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.gallery.errors import GalleryError
from reid.gallery.index import VectorIndex
from reid.gallery.openset import first_per_label, l2_normalize, topk_mean
from reid.gallery.records import Candidate

Ranked = list[tuple[str, float, int]]  # (individual, score, best image id), best first
VectorsOf = Callable[[Iterable[str]], dict[str, tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class SearchView:
    """An index with the individual behind each row: ``labels`` (N,) int32 into ``names``."""

    index: VectorIndex
    labels: np.ndarray
    names: list[str]


def as_matrix(embeddings: np.ndarray, what: str) -> np.ndarray:
    """(N, D) float32 from (N, D) or (D,) input; ``what`` names the call in the error."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise GalleryError(f"{what} needs embeddings shaped (N, D); got {matrix.shape}.")
    return matrix


def prepare_queries(embeddings: np.ndarray, top_k: int, what: str = "search") -> np.ndarray:
    """(Q, D) float32 unit query rows from (Q, D) or (D,) input, after checking ``top_k``.

    Raises GalleryError for ``top_k`` < 1 or a query row that is zero or not finite."""
    if int(top_k) < 1:
        raise GalleryError(f"top_k must be at least 1 (got {top_k}).")
    queries, usable = l2_normalize(as_matrix(embeddings, what))
    if not usable.all():
        bad = np.flatnonzero(~usable)[:5].tolist()
        raise GalleryError(f"Query embeddings {bad} are zero or not finite; re-embed them.")
    return queries


def rank_queries(
    view: SearchView,
    queries: np.ndarray,
    *,
    top_k: int,
    score_mode: str,
    score_k: int,
    exclude_ids: Iterable[int] = (),
    vectors_of: VectorsOf | None = None,
) -> list[Ranked]:
    """The ``top_k`` best individuals for each query.

    Args:
        queries: (Q, D) float32, L2-normalised.
        exclude_ids: gallery image ids to leave out (e.g. the query's own photo).
        vectors_of: for ``score_mode="topk_mean"``: individual -> (image ids, (n, D) vectors),
            used to score candidates exactly over all their photos.
    """
    excluded = np.isin(view.index.image_ids, np.fromiter(exclude_ids, dtype=np.int64))
    row_labels = np.where(excluded, -1, view.labels).astype(np.int64)
    target = min(top_k, len(np.unique(row_labels[row_labels >= 0])))
    per_individual = score_k if score_mode == "topk_mean" else 1
    k = max(32, 4 * top_k * per_individual) + int(excluded.sum())
    results: list[Ranked | None] = [None] * len(queries)
    pending = np.arange(len(queries))
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    while len(pending):
        sims, rows = view.index.search(queries[pending], k)
        exhausted = k >= view.index.ntotal
        still = []
        for q, sim_row, row_row in zip(pending, sims, rows, strict=True):
            labels = np.where(row_row >= 0, row_labels[np.maximum(row_row, 0)], -1)
            if score_mode == "topk_mean":
                ranked = _rank_topk_mean(view, queries[q], labels, score_k, excluded, vectors_of,
                                         cache)  # fmt: skip
            else:
                ranked = _rank_max(view, sim_row, row_row, labels)
            if exhausted or (row_row < 0).any() or _final(ranked, target, sim_row):
                results[q] = ranked[:top_k]
            else:
                still.append(q)
        pending = np.array(still, dtype=np.int64)
        k = min(view.index.ntotal, k * 4)
    return [r or [] for r in results]


def nearest_photos(view: SearchView, queries: np.ndarray, k: int) -> list[Ranked]:
    """The ``k`` nearest photos of each query (Q, D) float32 unit rows: per query a list of
    (individual, cosine, image id), best first (fewer when the gallery holds fewer)."""
    if view.index.ntotal == 0 or len(queries) == 0:
        return [[] for _ in range(len(queries))]
    sims, rows = view.index.search(queries, k)
    return [
        [(view.names[view.labels[r]], float(s), int(view.index.image_ids[r]))
         for s, r in zip(sim_row, row_row, strict=True) if r >= 0]
        for sim_row, row_row in zip(sims, rows, strict=True)
    ]  # fmt: skip


def _final(ranked: Ranked, target: int, sims: np.ndarray) -> bool:
    """True when no individual outside the retrieved photos can enter the top ``target``."""
    return len(ranked) >= target and (target == 0 or ranked[target - 1][1] >= sims[-1])


def _rank_max(view: SearchView, sims: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> Ranked:
    """Individuals scored by their best photo: the first time each appears among neighbours."""
    uniq, positions = first_per_label(sims, labels)
    return [
        (view.names[label], float(sims[p]), int(view.index.image_ids[rows[p]]))
        for label, p in zip(uniq, positions, strict=True)
    ]


def _rank_topk_mean(
    view: SearchView,
    query: np.ndarray,
    labels: np.ndarray,
    score_k: int,
    excluded: np.ndarray,
    vectors_of: VectorsOf | None,
    cache: dict[str, tuple[np.ndarray, np.ndarray]],
) -> Ranked:
    """Individuals seen among the neighbours, each scored exactly over all its photos."""
    if vectors_of is None:
        raise ValueError("score_mode='topk_mean' needs vectors_of")
    names = [view.names[j] for j in np.unique(labels[labels >= 0])]
    cache.update(vectors_of([n for n in names if n not in cache]))
    excluded_ids = set(view.index.image_ids[excluded].tolist())
    ranked: Ranked = []
    for name in names:
        ids, vectors = cache[name]
        keep = np.array([i not in excluded_ids for i in ids.tolist()], dtype=bool)
        if not keep.any():
            continue
        sims = vectors[keep] @ query
        ranked.append((name, topk_mean(sims, score_k), int(ids[keep][np.argmax(sims)])))
    ranked.sort(key=lambda item: -item[1])
    return ranked


def to_candidates(ranked: list[Ranked], path_of: Callable[[int], Path]) -> list[list[Candidate]]:
    """Rankings as :class:`Candidate` lists (best first), each with its best photo's path."""
    # Clip to the cosine range: float32 rounding can give 1.0000001 for an identical photo.
    return [
        [
            Candidate(name, min(1.0, max(-1.0, score)), image_id, path_of(image_id))
            for name, score, image_id in candidates
        ]  # fmt: skip
        for candidates in ranked
    ]
