"""Local scores for many photo pairs at once: extract every photo once, shortlist the pairs by
the global embedding, match the shortlisted pairs.

What a benchmark or a gallery calibration needs: ``extract_all`` (one :class:`LocalFeatures` per
photo, None where the photo could not be read), ``shortlist_pairs`` (each photo's ``size`` most
similar others by cosine: the pairs a re-ranker would ever see; ``nearest_columns`` is the rule
underneath), ``score_pairs`` (the verified
correspondence count of each pair) and ``pair_matrix`` (those counts as an (N, N) matrix, NaN
where a pair was not scored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from reid.errors import ImageLoadError
from reid.gallery import ImageRecord
from reid.matching.distinct import kth_distance, pool_descriptors, unit_descriptors
from reid.matching.local import LocalFeatures, LocalScorer, prepare_region


def extract_all(
    scorer: LocalScorer,
    records: Sequence[ImageRecord],
    *,
    cache: Path | None = None,
    progress: bool = True,
    workers: int = 2,
) -> list[LocalFeatures | None]:
    """Local features of every photo's region (its box, or the whole photo); None for a photo
    that cannot be read. With ``cache`` (a folder), features are kept there per photo and
    scorer fingerprint and read back on the next call."""

    def one(record: ImageRecord) -> LocalFeatures | None:
        file = None
        if cache is not None:
            key = f"{scorer.fingerprint}|{Path(record.path).resolve()}|{record.box}"
            file = cache / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"
            if file.is_file():
                return LocalFeatures.from_bytes(file.read_bytes())
        try:
            features = scorer.extract(prepare_region(record.path, record.box, scorer.max_side))
        except ImageLoadError:
            return None
        if file is not None:
            tmp = file.with_suffix(".tmp")
            tmp.write_bytes(features.to_bytes())
            tmp.replace(file)
        return features

    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(
            tqdm(
                pool.map(one, records),
                total=len(records),
                disable=not progress,
                desc=f"{scorer.name} features",
            )  # fmt: skip
        )


ROWS_PER_CHUNK = 512  # query rows per similarity block


def nearest_columns(
    vectors: np.ndarray,
    rows: Sequence[int],
    columns: Sequence[int],
    size: int,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Each row's ``size`` most similar ``columns`` by cosine (unordered), the row itself left
    out and, with ``groups`` (N,), every photo of its own sighting group: one int64 array of
    photo indices per row (shorter where fewer columns are left).

    ``vectors``: (N, D) float32 L2-normalised global embeddings; ``rows``, ``columns``: photo
    indices into them. The one shortlist rule of the LOIO benchmark, LNBNN's neighbourhoods
    and a gallery's fused calibration.
    """
    rows = np.asarray(rows, dtype=np.int64)
    columns = np.asarray(columns, dtype=np.int64)
    k = min(int(size), len(columns) - 1)
    if k < 1:
        return [np.zeros(0, np.int64) for _ in rows]
    found = []
    for begin in range(0, len(rows), ROWS_PER_CHUNK):
        chunk = rows[begin : begin + ROWS_PER_CHUNK]
        sims = vectors[chunk] @ vectors[columns].T  # (C, M)
        sims[chunk[:, None] == columns[None, :]] = -np.inf  # the row itself
        if groups is not None:
            sims[groups[chunk][:, None] == groups[columns][None, :]] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (C, k) positions in columns
        keep = np.isfinite(np.take_along_axis(sims, nearest, axis=1))
        found += [columns[n[m]] for n, m in zip(nearest, keep, strict=True)]
    return found


def as_pairs(rows: Sequence[int], nearest: Sequence[np.ndarray]) -> np.ndarray:
    """(P, 2) int64 unique pairs (i < j) of each row with its ``nearest`` photos: a pair found
    from either side appears once."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return np.zeros((0, 2), np.int64)
    a = np.repeat(rows, [len(n) for n in nearest])
    b = np.concatenate([np.asarray(n, np.int64) for n in nearest])
    if not len(b):
        return np.zeros((0, 2), np.int64)
    return np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)


def shortlist_pairs(vectors: np.ndarray, rows: Sequence[int], size: int) -> np.ndarray:
    """(P, 2) int pairs (i < j) of ``rows``: each row with its ``size`` most similar other rows.

    ``vectors``: (N, D) float32, L2-normalised global embeddings of all photos; only ``rows``
    take part. A pair found from either side appears once.
    """
    return as_pairs(rows, nearest_columns(vectors, rows, rows, size))


def nearest_rows(
    vectors: np.ndarray, rows: Sequence[int], size: int, groups: np.ndarray
) -> dict[int, np.ndarray]:
    """Each row's ``size`` most similar other rows of ``rows`` by cosine, its own sighting
    group left out: int arrays keyed by row."""
    found = nearest_columns(vectors, rows, rows, size, groups)
    return {int(r): n for r, n in zip(rows, found, strict=True)}


def lnbnn_normalisers(
    features: Sequence[LocalFeatures | None], neighbours: dict[int, np.ndarray], k: int
) -> dict[int, np.ndarray]:
    """LNBNN normaliser of every keypoint of each photo in ``neighbours``: (N_i,) float32, the
    L2 distance of its unit descriptor to its ``k``-th nearest descriptor pooled from the
    photo's shortlist (HotSpotter's K+1-th neighbour, without labels: a background or generic
    pattern that ``k`` shortlisted photos match as well gets a small normaliser)."""
    out = {}
    for row, near in neighbours.items():
        own = features[row]
        if own is None or not len(own):
            continue
        pool = pool_descriptors([f for f in (features[int(j)] for j in near) if f is not None])
        out[row] = kth_distance(unit_descriptors(own.descriptors), pool, k)
    return out


def score_pairs(
    scorer: LocalScorer,
    features: Sequence[LocalFeatures | None],
    pairs: np.ndarray,
    *,
    progress: bool = True,
    workers: int = 2,
    normalisers: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """(P,) float32 verified-correspondence score of each pair (i, j) of ``pairs`` (P, 2);
    0 where either photo has no features. With ``normalisers`` (see :func:`lnbnn_normalisers`)
    each correspondence counts max(0, d_norm - d_match) of photo i's keypoint (LNBNN) instead
    of 1."""

    def one(pair: np.ndarray) -> float:
        q, c = features[int(pair[0])], features[int(pair[1])]
        if q is None or c is None or not len(q) or not len(c):
            return 0.0
        corr = scorer.match(q, c)
        norm = None if normalisers is None else normalisers.get(int(pair[0]))
        if norm is None or corr.query_idx is None or not corr.count:
            return corr.score
        idx = np.asarray(corr.query_idx)
        d_match = kth_distance(unit_descriptors(q.descriptors[idx]),
                                unit_descriptors(c.descriptors), 1)  # fmt: skip
        return float(np.maximum(norm[idx] - d_match, 0.0).sum())

    with ThreadPoolExecutor(max(1, workers)) as pool:
        scores = list(
            tqdm(
                pool.map(one, pairs),
                total=len(pairs),
                disable=not progress,
                desc=f"{scorer.name} pairs",
            )  # fmt: skip
        )
    return np.asarray(scores, dtype=np.float32)


def pair_matrix(n: int, pairs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n, n) float32, symmetric: ``scores`` at ``pairs`` and their mirror, NaN elsewhere."""
    matrix = np.full((n, n), np.nan, dtype=np.float32)
    if len(pairs):
        matrix[pairs[:, 0], pairs[:, 1]] = scores
        matrix[pairs[:, 1], pairs[:, 0]] = scores
    return matrix
