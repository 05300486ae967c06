"""Discovery (reid.matching.discover): grouping never-seen photos into proposed individuals."""

from __future__ import annotations

import numpy as np
import pytest

from reid.matching.discover import cluster, count_error, describe


def _scores(truth: list[int], same: float = 0.9, different: float = 0.1) -> np.ndarray:
    t = np.array(truth)
    s = np.where(t[:, None] == t[None, :], same, different).astype(float)
    np.fill_diagonal(s, 1.0)
    return s


def test_clear_groups_are_recovered_and_numbered_by_first_photo():
    truth = [2, 0, 2, 1, 0, 1, 1]
    labels = cluster(_scores(truth), threshold=0.5)
    assert labels.tolist() == [0, 1, 0, 2, 1, 2, 2]
    assert count_error(labels, np.array(truth)) == 0


def test_one_chance_match_does_not_chain_two_individuals():
    # A = photos 0-2, B = photos 3-5; a single strong pair (2, 3) across them
    s = _scores([0, 0, 0, 1, 1, 1])
    s[2, 3] = s[3, 2] = 0.95
    labels = cluster(s, threshold=0.5)
    # average linkage merges (2, 3) first, then {0, 1} with them (mean 0.5); the refinement
    # moves 3 to where its mean is highest: {4, 5} (0.9 against 0.38)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_threshold_cuts_where_mean_score_falls_below_it():
    s = np.array([[1.0, 0.6, 0.2], [0.6, 1.0, 0.2], [0.2, 0.2, 1.0]])
    assert cluster(s, 0.55).tolist() == [0, 0, 1]
    assert cluster(s, 0.65).tolist() == [0, 1, 2]
    assert cluster(s, 0.15).tolist() == [0, 0, 0]


def test_describe_reports_cohesion_and_weakest_link():
    s = np.array([[1.0, 0.9, 0.6], [0.9, 1.0, 0.7], [0.6, 0.7, 1.0]])
    s = np.pad(s, ((0, 1), (0, 1)), constant_values=0.0)
    s[3, 3] = 1.0
    groups = describe(s, np.array([0, 0, 0, 1]))
    big, alone = groups
    assert big.members == [0, 1, 2]
    assert big.cohesion == pytest.approx((0.9 + 0.6 + 0.7) / 3)
    assert big.weakest == 2 and big.weakest_score == pytest.approx(0.65)
    assert alone.members == [3] and alone.cohesion is None and alone.weakest_score is None


def test_edge_cases():
    assert cluster(np.zeros((0, 0)), 0.5).tolist() == []
    assert cluster(np.ones((1, 1)), 0.5).tolist() == [0]
    with pytest.raises(ValueError, match="square"):
        cluster(np.zeros((2, 3)), 0.5)
    # scores need not be probabilities: cosines in [-1, 1] cluster the same way
    s = _scores([0, 0, 1], same=0.4, different=-0.3)
    assert cluster(s, 0.0).tolist() == [0, 0, 1]
