"""Calibrating fused matching on a gallery's own photos: what ``reid calibrate`` adds when the
gallery holds local features.

1. Shortlist: each gallery photo (up to ``max_queries``, sampled with a seed) with its
   ``shortlist`` most similar photos by the stored vectors, photos of its own sighting left out
   (near-duplicates a field query never has). Each pair is scored once.
2. Score the pairs: the cosine of their vectors, and the local scorer's verified correspondences
   from the stored features (the scorer rebuilt from the spec recorded at enroll).
3. Fit :class:`reid.matching.fused.FusionCalibration` on those pairs (same individual =
   positive; all pairs are from different sightings by construction), on pairs of individuals
   the model never trained on when there are enough of them.
4. Thresholds: leave-one-individual-out trials (:func:`reid.gallery.threshold.loo_trials_of`) on
   the fused probability (and on the local scorer's alone), pairs outside the shortlists scoring
   0, impostors drawn from never-trained individuals where possible, as for the cosine threshold;
   :func:`reid.gallery.threshold.fit_threshold` at the target false-match rate.
5. Roles (:mod:`reid.matching.roles`): the same trials' rank-1 and AUROC of the global cosine,
   the fused probability and the local scorer's, and for each job (naming the individual,
   calling NEW) the best of them, the global score keeping a job unless another beats it by
   more than ``roles.MARGIN``: what ``reid match`` does by default (``--scorer auto``).

The calibrators and thresholds are fitted on the same pairs (the gallery has no others), so the
rates printed are in-sample; the LOIO benchmark measures them held out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import numpy as np

from reid.errors import ReIDError
from reid.gallery import ThresholdFit, TrialScores, fit_threshold
from reid.gallery.store import utc_now
from reid.gallery.threshold import MIN_NEVER_TRAINED, loo_trials_of, unknown_pool
from reid.matching.calibration import MIN_PER_CLASS
from reid.matching.fused import (
    COSINE,
    DEFAULT_SHORTLIST,
    FUSED,
    GLOBAL,
    FusedCalibration,
    FusionCalibration,
    gallery_scorer,
)
from reid.matching.local import LocalFeatures, LocalScorer
from reid.matching.pairs import as_pairs, nearest_columns, score_pairs
from reid.matching.roles import TrialQuality, choose_roles, trial_quality

if TYPE_CHECKING:
    from reid.gallery import Gallery
    from reid.gallery.local import PairInputs

MAX_QUERIES = 2000  # photos whose shortlists are scored; above, a seeded sample


class NotEnoughPairs(ReIDError):
    """The gallery has too few same- or different-individual pairs to calibrate fusion."""


CURVE_FMRS = (0.01, 0.02, 0.05, 0.1, 0.2)  # the fused threshold is also kept at these rates


def calibrate_fused(
    gallery: Gallery,
    *,
    target_fmr: float,
    trained_individuals: Collection[str] | None = None,
    shortlist: int = DEFAULT_SHORTLIST,
    max_queries: int = MAX_QUERIES,
    seed: int = 0,
    progress: bool = False,
    workers: int = 2,
) -> FusedCalibration:
    """Measure the gallery's fused calibration (see the module docstring) without writing it;
    store it with ``gallery.calibrate(fused=result.to_dict(), expect_generation=
    result.generation)``. Raises :class:`NotEnoughPairs` (a :class:`ReIDError`) when either
    class has fewer than ``MIN_PER_CLASS`` pairs, ReIDError when no local features are stored.
    """
    scorer = gallery_scorer(gallery)
    inp = gallery.pair_inputs()
    n = len(inp.image_ids)
    queries = np.arange(n)
    if n > max_queries:
        rng = np.random.default_rng(seed)
        queries = np.sort(rng.choice(n, size=max_queries, replace=False))
    pairs = shortlist_other_sightings(inp.vectors, inp.groups, queries, shortlist)
    raw = score_gallery_pairs(gallery, scorer, inp, pairs, progress=progress, workers=workers)
    same = inp.labels[pairs[:, 0]] == inp.labels[pairs[:, 1]]
    pair_pool, fit_on = calibration_pairs(inp, pairs, same, trained_individuals)
    n_same, n_diff = int(same[fit_on].sum()), int((~same[fit_on]).sum())
    if min(n_same, n_diff) < MIN_PER_CLASS:
        raise NotEnoughPairs(
            f"Fused calibration of gallery {gallery.directory} needs at least {MIN_PER_CLASS} "
            f"same-individual and {MIN_PER_CLASS} different-individual photo pairs from "
            f"different sightings among each photo's {shortlist} nearest, and found {n_same} "
            f"and {n_diff}; enroll more sightings (only the cosine threshold was calibrated)."
        )
    fusion = FusionCalibration.fit({s: v[fit_on] for s, v in raw.items()}, same[fit_on])
    probs = fusion.probabilities(raw)
    scored = {FUSED: fusion.fuse(probs), scorer.name: probs[scorer.name]}
    fits, pool, unknown, quality, curve = thresholds(inp, pairs, scored, queries,
                                                     trained_individuals, target_fmr)  # fmt: skip
    roles = choose_roles(quality, GLOBAL)
    return FusedCalibration(
        scorer.name, dict((gallery.local_scorer_spec or {}).get("settings") or {}),
        str(gallery.local_fingerprint), gallery.model_fingerprint, int(shortlist), fusion,
        fits, pair_pool, pool, {"same": n_same, "different": n_diff}, unknown, utc_now(),
        inp.generation, {"num_queries": int(len(queries)), "num_scored_pairs": int(len(pairs)),
                         "fused_threshold_by_fmr": curve},
        roles,
    )  # fmt: skip


def shortlist_other_sightings(
    vectors: np.ndarray, groups: np.ndarray, queries: np.ndarray, size: int
) -> np.ndarray:
    """(P, 2) int64 unique pairs (i < j): each query row with its ``size`` most similar rows
    of other sighting groups. vectors: (N, D) float32 unit rows; groups: (N,); queries: (Q,)."""
    nearest = nearest_columns(vectors, queries, np.arange(len(vectors)), size, groups)
    return as_pairs(queries, nearest)


def score_gallery_pairs(
    gallery: Gallery,
    scorer: LocalScorer,
    inp: PairInputs,
    pairs: np.ndarray,
    *,
    progress: bool = False,
    workers: int = 2,
) -> dict[str, np.ndarray]:
    """Raw scores of ``pairs`` (P, 2) rows of ``inp``: ``cosine`` and the local scorer's
    correspondence count from the stored features (0 where a photo has none); (P,) each."""
    rows = np.unique(pairs)
    blobs = gallery.local_features(inp.image_ids[rows].tolist())
    features: list[LocalFeatures | None] = [None] * len(inp.image_ids)
    for r in rows:
        blob = blobs.get(int(inp.image_ids[r]))
        features[int(r)] = None if blob is None else LocalFeatures.from_bytes(blob)
    cosine = np.einsum("pd,pd->p", inp.vectors[pairs[:, 0]], inp.vectors[pairs[:, 1]])
    local = score_pairs(scorer, features, pairs, progress=progress, workers=workers)
    return {COSINE: cosine.astype(np.float64), scorer.name: local.astype(np.float64)}


def calibration_pairs(
    inp: PairInputs, pairs: np.ndarray, same: np.ndarray, trained: Collection[str] | None
) -> tuple[str, np.ndarray]:
    """Which pairs fit the calibrators: those of two never-trained individuals when at least
    ``MIN_NEVER_TRAINED`` such individuals give ``MIN_PER_CLASS`` pairs of each kind
    ("never-trained"), else all ("trained" when the model's individuals were given, else
    "unspecified"). Returns (pool, (P,) bool mask)."""
    everyone = np.ones(len(pairs), dtype=bool)
    if trained is None:
        return "unspecified", everyone
    trained = set(trained)
    fresh = np.array([name not in trained for name in inp.names], dtype=bool)
    mask = fresh[inp.labels[pairs[:, 0]]] & fresh[inp.labels[pairs[:, 1]]]
    enough = min(int(same[mask].sum()), int((~same[mask]).sum())) >= MIN_PER_CLASS
    if fresh.sum() >= MIN_NEVER_TRAINED and enough:
        return "never-trained", mask
    return "trained", everyone


def thresholds(
    inp: PairInputs,
    pairs: np.ndarray,
    scored: Mapping[str, np.ndarray],
    queries: np.ndarray,
    trained: Collection[str] | None,
    target_fmr: float,
) -> tuple[dict[str, ThresholdFit], str, int, dict[str, TrialQuality], dict[str, float]]:
    """The threshold of each pair probability in ``scored`` (name -> (P,) values of ``pairs``)
    by leave-one-individual-out trials of ``queries``; unscored pairs count 0. Returns the fits
    by name, the unknown pool ("never-trained" | "trained" | "unspecified"), the number of
    individuals in it, and each score's trial rank-1 and AUROC, the global cosine's (over all
    photos, not only the shortlists) included as ``global``: what :func:`choose_roles` needs;
    and the fused score's threshold at each of ``CURVE_FMRS`` (false-match rate as text ->
    threshold), for discovery and `reid survey`."""
    from scipy.sparse import csr_matrix

    n = len(inp.image_ids)
    pool, mask = unknown_pool(inp.names, inp.labels[queries], trained)
    fits, quality = {}, {}
    curve: dict[str, float] = {}

    def pooled(trials: TrialScores) -> TrialScores:
        return TrialScores(trials.known_scores, trials.known_correct,
                           trials.impostor_scores[mask])  # fmt: skip

    for name, values in scored.items():
        v = np.asarray(values, np.float32)
        r = np.r_[pairs[:, 0], pairs[:, 1]]
        c = np.r_[pairs[:, 1], pairs[:, 0]]
        matrix = csr_matrix((np.r_[v, v], (r, c)), shape=(n, n))
        trials = pooled(loo_trials_of(
            lambda rows, cols, m=matrix: m[rows][:, cols].toarray(),
            inp.labels, inp.groups, score_mode="max", queries=queries,
        ))  # fmt: skip
        fits[name] = fit_threshold(trials, target_fmr)
        quality[name] = trial_quality(trials)
        if name == FUSED:  # what discovery and `reid survey` cut at, per false-match rate
            curve = {str(f): float(fit_threshold(trials, f).threshold) for f in CURVE_FMRS}
    vectors = inp.vectors
    cosine = pooled(
        loo_trials_of(
            lambda rows, cols: vectors[rows] @ vectors[cols].T,
            inp.labels,
            inp.groups,
            score_mode="max",
            queries=queries,
        )
    )
    quality[GLOBAL] = trial_quality(cosine)
    return fits, pool, int(len(np.unique(inp.labels[queries][mask]))), quality, curve


__all__ = ["MAX_QUERIES", "NotEnoughPairs", "calibrate_fused", "shortlist_other_sightings"]
