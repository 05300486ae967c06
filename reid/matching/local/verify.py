"""Geometric verification shared by the local scorers: keep the matches that one transform of
the region explains.

A re-photographed salamander head is the same flat-ish patch turned and scaled, so the default
model is a similarity (rotation, uniform scale, shift: ``cv2.estimateAffinePartial2D``). A
homography (``cv2.findHomography`` with ``cv2.USAC_MAGSAC``) also admits perspective; it has
more freedom, so chance matches between different animals line up more easily.
``cv2.estimateAffinePartial2D`` accepts no USAC method in this OpenCV build (5.1: "Unknown or
unsupported robust estimation method"), so it runs plain RANSAC, which takes ~0.5 ms for 300
matches with 80 % outliers (2 points a sample); MAGSAC gives the homography in ~1 ms where
RANSAC took 45 ms.
"""

from __future__ import annotations

import cv2
import numpy as np

from reid.matching.local.features import Correspondences

MODELS = ("similarity", "homography")
# Points a model needs, plus one: a sample of exactly that size always fits, which is no evidence.
MIN_MATCHES = {"similarity": 3, "homography": 5}
# A similarity that shrinks or grows the region more than this is not a re-photographed head
# (both sides are resized to the same max_side) but a chance alignment.
MAX_SCALE_CHANGE = 4.0


def verify(
    query_xy: np.ndarray,
    candidate_xy: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    query_idx: np.ndarray | None = None,
    model: str = "similarity",
    threshold: float = 8.0,
    max_iters: int = 2000,
) -> Correspondences:
    """The matched pairs that one ``model`` transform (query -> candidate) explains.

    query_xy, candidate_xy: (M, 2) pixel coordinates of the matched keypoints, row i matched to
    row i; weights: (M,) how much each pair counts (default 1 each); query_idx: None or (M,) the
    row of each query point in its :class:`LocalFeatures`, kept for the inliers (see
    :attr:`Correspondences.query_idx`). threshold: the largest
    reprojection error, in pixels of the candidate region, of an inlier. Returns the inliers, or
    :meth:`Correspondences.empty` when there are fewer than ``MIN_MATCHES[model]`` pairs or
    inliers, or no plausible transform.
    """
    if model not in MODELS:
        raise ValueError(f"unknown verification model {model!r}; expected one of {MODELS}")
    src = np.ascontiguousarray(query_xy, dtype=np.float32).reshape(-1, 2)
    dst = np.ascontiguousarray(candidate_xy, dtype=np.float32).reshape(-1, 2)
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} query points but {len(dst)} candidate points")
    w = np.ones(len(src), np.float32) if weights is None else np.asarray(weights, np.float32)
    if len(src) < MIN_MATCHES[model]:
        return Correspondences.empty()
    mask = _inlier_mask(src, dst, model, threshold, max_iters)
    if mask is None or mask.sum() < MIN_MATCHES[model]:
        return Correspondences.empty()
    rows = None if query_idx is None else np.asarray(query_idx, np.int32)[mask]
    return Correspondences(src[mask], dst[mask], w[mask], rows)


def _inlier_mask(
    src: np.ndarray, dst: np.ndarray, model: str, threshold: float, max_iters: int
) -> np.ndarray | None:
    """(M,) bool inliers of the best ``model`` transform, or None when there is none."""
    try:
        if model == "similarity":
            matrix, inliers = cv2.estimateAffinePartial2D(
                src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                maxIters=max_iters, confidence=0.999, refineIters=10,
            )  # fmt: skip
            plausible = matrix is not None and _plausible_similarity(matrix)
        else:
            matrix, inliers = cv2.findHomography(
                src, dst, cv2.USAC_MAGSAC, threshold, maxIters=max_iters, confidence=0.999
            )
            plausible = matrix is not None and _plausible_homography(matrix)
    except cv2.error:  # degenerate input, e.g. every point in the same place
        return None
    if not plausible or inliers is None:
        return None
    return inliers.ravel().astype(bool)


def _plausible_similarity(matrix: np.ndarray) -> bool:
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    return 1.0 / MAX_SCALE_CHANGE <= scale <= MAX_SCALE_CHANGE


def _plausible_homography(matrix: np.ndarray) -> bool:
    """No mirror image (a photo cannot flip a head) and no extreme area change."""
    det = float(np.linalg.det(matrix[:2, :2]) / (matrix[2, 2] ** 2 + 1e-12))
    return 1.0 / MAX_SCALE_CHANGE**2 <= det <= MAX_SCALE_CHANGE**2
