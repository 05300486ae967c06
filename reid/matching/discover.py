"""Discovery: photos that match no known individual, grouped into proposed new individuals.

Photos called NEW one by one would make every photo of a newcomer its own "new individual" and
inflate every count. Instead their pairwise same-individual scores (the calibrated fused P(same)
where the gallery has a fused calibration, the global cosine before that) are clustered by
average linkage and cut at the calibrated NEW threshold: two groups merge only while the mean
score between them stays at or above the threshold, so a group never rests on one chance match
(single linkage would chain through it); then each photo moves to the group it has the highest
mean score with, or stands alone below the threshold, until nothing moves. Each group reports
its cohesion (mean score between its photos) and its weakest link (the photo least tied to the
rest), which is where a reviewer looks first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform


@dataclass(frozen=True)
class Group:
    """One proposed individual: ``members`` (K,) indices into the photos clustered, ``cohesion``
    the mean pairwise score among them (None for one photo), ``weakest`` the member whose mean
    score to the others is lowest and ``weakest_score`` that mean (None for one photo)."""

    members: list[int]
    cohesion: float | None
    weakest: int
    weakest_score: float | None


def cluster(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Average-linkage clusters of N photos from ``scores`` (N, N) symmetric similarities (higher:
    more alike), cut where the mean score between two clusters falls below ``threshold``.
    Returns (N,) int64 labels 0..G-1, numbered by first appearance."""
    s = np.asarray(scores, np.float64)
    n = len(s)
    if s.shape != (n, n):
        raise ValueError(f"scores must be square (N, N), not {s.shape}")
    if n == 0:
        return np.zeros(0, np.int64)
    if n == 1:
        return np.zeros(1, np.int64)
    sym = (s + s.T) / 2
    top = float(max(np.max(sym), threshold)) + 1.0  # distances >= 0, same order as the scores
    dist = top - sym
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform(dist, checks=False), method="average")
    labels = _refine(sym, fcluster(tree, t=top - threshold, criterion="distance"), threshold)
    _, first = np.unique(labels, return_index=True)
    order = {label: k for k, label in enumerate(labels[np.sort(first)])}
    return np.array([order[label] for label in labels], np.int64)


def _refine(s: np.ndarray, labels: np.ndarray, threshold: float, rounds: int = 10) -> np.ndarray:
    """Move each photo to the group it has the highest mean score with, or alone when that mean
    is below ``threshold``, until nothing moves. Agglomeration is greedy: a chance match merges
    two photos of different individuals first, and one of them then rides along with the other's
    group; this undoes it."""
    labels = np.unique(np.asarray(labels), return_inverse=True)[1]
    n = len(labels)
    onehot = np.zeros((n, 2 * n), np.float64)  # room for photos set alone
    onehot[np.arange(n), labels] = 1.0
    for _ in range(rounds):
        moved = False
        for i in range(n):
            own = labels[i]
            sums = s[i] @ onehot - s[i, i] * onehot[i]  # (2N,) score sums to each group, not self
            counts = onehot.sum(axis=0) - onehot[i]
            means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
            best = int(np.argmax(means))
            if means[best] >= threshold:
                target = best
            elif counts[own] > 0:  # below the threshold with every group: stand alone
                target = int(np.flatnonzero(onehot.sum(axis=0) == 0)[0])
            else:
                target = own
            if target != own:
                onehot[i, own], onehot[i, target], labels[i], moved = 0.0, 1.0, target, True
        if not moved:
            break
    return labels


def describe(scores: np.ndarray, labels: np.ndarray) -> list[Group]:
    """One :class:`Group` per label, largest first (ties: first photo first)."""
    s = (np.asarray(scores, np.float64) + np.asarray(scores, np.float64).T) / 2
    groups = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) == 1:
            groups.append(Group([int(members[0])], None, int(members[0]), None))
            continue
        block = s[np.ix_(members, members)]
        off = ~np.eye(len(members), dtype=bool)
        mean_to_rest = (block * off).sum(axis=1) / (len(members) - 1)
        k = int(np.argmin(mean_to_rest))
        groups.append(Group([int(m) for m in members], float(block[off].mean()),
                            int(members[k]), float(mean_to_rest[k])))  # fmt: skip
    return sorted(groups, key=lambda g: (-len(g.members), g.members[0]))


def count_error(labels: np.ndarray, truth: np.ndarray) -> int:
    """Proposed individuals minus true individuals (positive: the count is inflated)."""
    return int(len(np.unique(labels)) - len(np.unique(truth)))
