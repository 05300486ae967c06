"""Calibrate a gallery's open-set threshold: read its rows, run the trials, store the result.

The maths lives in :mod:`reid.gallery.openset`; this module checks that the gallery can be
calibrated at all, samples queries for large galleries and records the outcome in settings and audit
log.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

import numpy as np

from reid.gallery import catalog
from reid.gallery.errors import GalleryError
from reid.gallery.openset import TrialScores, loo_trials, rates_at, threshold_for_fmr
from reid.gallery.records import Calibration
from reid.gallery.store import WriteTxn, get_setting, set_setting, utc_now


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
    impostors = trials.impostor_scores[pool_mask]
    trials = TrialScores(trials.known_scores, trials.known_correct, impostors)
    threshold = threshold_for_fmr(impostors, target_fmr)
    fmr, tpr, rank1 = rates_at(trials, threshold)
    result = Calibration(
        threshold=threshold,
        target_fmr=target_fmr,
        fmr=fmr,
        tpr=tpr,
        rank1=rank1,
        num_known_trials=int(len(trials.known_scores)),
        num_unknown_trials=int(len(trials.impostor_scores)),
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
        "threshold": repr(threshold),
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
