"""Calibration must not be fooled by individuals the embedding model was trained on.

A model spreads its training individuals apart, so their leave-one-out impostor scores run low;
a never-seen animal embeds between known ones and scores higher. The vectors below are built
that way, like the real embeddings measured in benchmarks/e2e_gallery.py.
"""

from __future__ import annotations

import numpy as np

from reid.gallery import Gallery
from reid.gallery.synthetic import fake_photos, random_unit_vectors, records_for
from reid.gallery.threshold import unknown_pool

DIM, FP = 32, "model-A"


def _between(centres, rng, num):
    """Unit vectors halfway between random pairs of centres: how newcomers embed."""
    first = rng.integers(0, len(centres), num)
    second = (first + rng.integers(1, len(centres), num)) % len(centres)
    mids = centres[first] + centres[second]
    return mids / np.linalg.norm(mids, axis=1, keepdims=True)


def _photos(centres, per, rng, noise=0.25):
    labels = np.repeat(np.arange(len(centres)), per)
    v = centres[labels] + noise / np.sqrt(DIM) * rng.standard_normal((len(labels), DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), labels


def _flagged(g, strangers):
    return float(np.mean([m.is_new for m in g.identify(strangers, model_fingerprint=FP)]))


def test_never_trained_individuals_set_the_threshold(tmp_path):
    rng = np.random.default_rng(0)
    trained_c = random_unit_vectors(20, DIM, seed=1)  # spread apart by training
    tv, tl = _photos(trained_c, 6, rng)
    fv, fl = _photos(_between(trained_c, rng, 6), 6, rng)  # never trained: between known ones
    strangers, _ = _photos(_between(trained_c, rng, 200), 1, rng)
    trained = [f"ind{i:03d}" for i in range(20)]
    photos = fake_photos(tmp_path / "p", len(tl) + len(fl))
    g = Gallery.create(tmp_path / "g", model_fingerprint=FP, embedding_dim=DIM)
    g.enroll(records_for(photos[: len(tl)], tl, sightings=3), tv, model_fingerprint=FP)

    # only trained individuals in the gallery: the threshold is optimistic and says so
    optimistic = g.calibrate(target_fmr=0.05, trained_individuals=trained)
    assert optimistic.unknown_pool == "trained" and optimistic.optimistic
    optimistic_flagged = _flagged(g, strangers)

    g.enroll(records_for(photos[len(tl) :], fl + 20, sightings=3), fv, model_fingerprint=FP)
    honest = g.calibrate(target_fmr=0.05, trained_individuals=trained)
    assert honest.unknown_pool == "never-trained" and not honest.optimistic
    assert honest.num_unknown_individuals == 6 and honest.num_unknown_trials == 36
    assert honest.threshold > optimistic.threshold + 0.1
    honest_flagged = _flagged(g, strangers)
    assert honest_flagged >= 0.85 and optimistic_flagged < 0.5, (optimistic_flagged, honest_flagged)
    assert g.info()["calibration"]["unknown_pool"] == "never-trained"
    assert g.calibrate(target_fmr=0.05).unknown_pool == "unspecified"


def test_pool_falls_back_when_too_few_never_trained():
    names = ["a", "b", "c"]
    labels = np.array([0, 0, 1, 1, 2, 2])
    pool, mask = unknown_pool(names, labels, ["a", "b"])  # only one never-trained individual
    assert pool == "trained" and mask.all()
    pool, mask = unknown_pool(names, labels, ["a"])
    assert pool == "never-trained" and mask.tolist() == [False, False, True, True, True, True]
    assert unknown_pool(names, labels, None)[0] == "unspecified"
