"""Calibrate a gallery's open-set threshold: read its rows, run the trials, store the result.

The maths lives in :mod:`gallery.openset`; this module checks that the gallery can be calibrated
at all, samples queries for large galleries and records the outcome in settings and audit log.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gallery import catalog
from gallery.errors import GalleryError
from gallery.openset import loo_trials, rates_at, threshold_for_fmr
from gallery.records import Calibration
from gallery.store import WriteTxn, get_setting, set_setting, utc_now


def run_calibration(
    txn: WriteTxn,
    directory: Path,
    *,
    target_fmr: float,
    score_mode: str,
    score_k: int,
    max_queries: int,
    seed: int,
) -> Calibration:
    """Measure and store the threshold inside the write transaction ``txn``."""
    dim = int(get_setting(txn.conn, "embedding_dim", "0"))
    vectors, labels, groups, num_individuals = catalog.load_calibration_inputs(txn.conn, dim)
    check_calibratable(directory, labels, groups, num_individuals)
    queries = None
    if len(vectors) > max_queries:  # the (Q, N) similarities grow quadratically: sample Q
        rng = np.random.default_rng(seed)
        queries = np.sort(rng.choice(len(vectors), size=max_queries, replace=False))
    trials = loo_trials(
        vectors, labels, groups, score_mode=score_mode, score_k=score_k, queries=queries
    )
    threshold = threshold_for_fmr(trials.impostor_scores, target_fmr)
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
