"""Open-set maths on inputs small enough to work out by hand (gallery/openset.py)."""

from __future__ import annotations

import numpy as np
import pytest

from reid.gallery import GalleryError, validate_individual_id
from reid.gallery.openset import (
    first_per_label,
    individual_scores,
    is_new,
    l2_normalize,
    loo_trials,
    loo_trials_of,
    rates_at,
    threshold_for_fmr,
    topk_mean,
)


def test_l2_normalize_flags_zero_and_nan_rows():
    vectors, ok = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, 1.0]]))
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], [0.6, 0.8], rtol=1e-6)
    assert ok.tolist() == [True, False, False]
    assert not vectors[1:].any()


def test_threshold_is_just_above_the_allowed_impostor_scores():
    impostors = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], dtype=np.float32)
    # 10 % of 10 trials: one false match allowed, so only 0.9 may reach the threshold.
    threshold = threshold_for_fmr(impostors, 0.10)
    assert np.float32(0.8) < threshold < 0.8 + 1e-6
    assert np.mean(impostors >= threshold) == pytest.approx(0.1)
    # Below 1/n nothing may pass: the threshold is just above the best impostor.
    assert np.float32(0.9) < threshold_for_fmr(impostors, 0.05) < 0.9 + 1e-6


def test_threshold_with_ties_never_exceeds_the_target():
    impostors = np.array([0.5] * 5 + [0.1] * 5, dtype=np.float32)
    threshold = threshold_for_fmr(impostors, 0.3)  # 3 allowed, but the top 5 tie
    assert np.mean(impostors >= threshold) == 0.0
    assert threshold > 0.5


def test_first_per_label_keeps_best_photo_of_each_individual():
    sims = np.array([0.9, 0.8, 0.7, 0.6, 0.5], dtype=np.float32)
    labels = np.array([2, 2, 0, -1, 1])
    uniq, positions = first_per_label(sims, labels)
    assert uniq.tolist() == [2, 0, 1]
    assert positions.tolist() == [0, 2, 4]


def test_topk_mean_and_decision():
    assert topk_mean(np.array([0.1, 0.9, 0.5]), 2) == pytest.approx(0.7)
    assert topk_mean(np.array([0.4]), 3) == pytest.approx(0.4)
    assert is_new(0.2, 0.3) and not is_new(0.3, 0.3) and not is_new(-1.0, None)


def test_individual_scores_max_and_topk_mean_skip_excluded_photos():
    sims = np.array([[0.9, -np.inf, 0.5, 0.1, 0.3]], dtype=np.float32)
    starts = np.array([0, 2])  # individual 0: columns 0-1, individual 1: columns 2-4
    np.testing.assert_allclose(individual_scores(sims, starts, "max", 2), [[0.9, 0.5]])
    np.testing.assert_allclose(individual_scores(sims, starts, "topk_mean", 2), [[0.9, 0.4]])


def test_loo_trials_on_a_hand_made_gallery():
    # Individual 0: two photos in different sightings along x; individual 1: one photo along y.
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 0, 1])
    groups = np.array([0, 1, 2])
    trials = loo_trials(vectors, labels, groups)
    # Known trials: photos 0 and 1 (individual 1 has no second photo).
    np.testing.assert_allclose(np.sort(trials.known_scores), [0.8, 0.8], rtol=1e-6)
    assert trials.known_correct.all()
    # Unknown trials: 0 vs {2} -> 0.0, 1 vs {2} -> 0.6, 2 vs {0, 1} -> 0.6.
    np.testing.assert_allclose(np.sort(trials.impostor_scores), [0.0, 0.6, 0.6], atol=1e-6)
    fmr, tpr, rank1 = rates_at(trials, 0.7)
    assert (fmr, tpr, rank1) == (0.0, 1.0, 1.0)


def test_loo_trials_of_a_pair_score_matrix_equal_those_of_its_vectors():
    rng = np.random.default_rng(0)
    vectors = l2_normalize(rng.normal(size=(12, 4)))[0]
    labels, groups = np.repeat(np.arange(4), 3), np.arange(12) // 2
    matrix = vectors @ vectors.T  # a precomputed pair score: a re-ranker's, a fused one
    a = loo_trials(vectors, labels, groups, score_mode="topk_mean", score_k=2)
    b = loo_trials_of(lambda r, c: matrix[np.ix_(r, c)], labels, groups,
                      score_mode="topk_mean", score_k=2)  # fmt: skip
    for x, y in zip(
        (a.known_scores, a.known_correct, a.impostor_scores),
        (b.known_scores, b.known_correct, b.impostor_scores),
        strict=True,
    ):
        np.testing.assert_allclose(x, y, atol=1e-6)
    # the caller's matrix is not written into (own sightings are masked on a copy)
    np.testing.assert_allclose(matrix, vectors @ vectors.T)


def test_loo_trials_exclude_the_query_sighting():
    # Photos 0 and 1 are the same sighting (near-duplicates); photo 2 is another sighting.
    vectors = l2_normalize(np.array([[1.0, 0.0], [1.0, 0.01], [0.6, 0.8], [-1.0, 0.2]]))[0]
    trials = loo_trials(vectors, np.array([0, 0, 0, 1]), np.array([0, 0, 1, 2]))
    # Query 0 may not use photo 1: its known score is its similarity to photo 2 (0.6).
    assert trials.known_scores.min() == pytest.approx(0.6, abs=1e-2)


@pytest.mark.parametrize(
    "bad", ["", "   ", "NEW", "new", "a/b", "a\\b", ".", "..", "tab\there", "x" * 129]
)
def test_invalid_individual_ids_are_rejected_with_the_rule(bad):
    with pytest.raises(GalleryError, match="is not allowed: it must"):
        validate_individual_id(bad)


def test_valid_ids_are_stripped():
    assert validate_individual_id("  JGS-001 ") == "JGS-001"
    assert validate_individual_id("オオサンショウウオ 7") == "オオサンショウウオ 7"
