"""Choosing which score names the individual and which one calls NEW (reid.matching.roles)."""

import numpy as np
import pytest

from reid.gallery.threshold import loo_trials_of
from reid.matching.roles import (
    RANK_WEIGHT,
    Roles,
    TrialQuality,
    choose_roles,
    combined_trials,
    measure_roles,
    ranked_decided,
    trial_quality,
)


def _toy(seed: int = 0):
    """12 individuals x 3 sightings of 1 photo; ``good_rank`` names them, ``good_decide``
    separates known from unknown only by its level (same individual 0.9, others 0.2-0.6), and
    names the wrong individual for a quarter of the photos; ``good_rank`` ranks right but at a
    level that varies from query to query."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(12), 3)
    groups = np.arange(len(labels))
    same = labels[:, None] == labels[None, :]
    noise = rng.uniform(0, 1, same.shape)
    noise = (noise + noise.T) / 2
    level = rng.uniform(0.3, 0.7, (len(labels), 1))  # a query-dependent level: poor AUROC
    good_rank = level + 0.01 * same + 0.001 * noise
    decide = np.where(same, 0.9, 0.2 + 0.4 * noise)
    # the decision score names the wrong individual for a quarter of the photos: one impostor
    # photo scores 0.95 for them (they still look "known", which is what it is good at)
    for i in range(0, len(labels), 4):
        j = (i + 5) % len(labels)
        decide[i, j] = 0.95
    return labels, groups, good_rank, decide


def _fn(matrix):
    return lambda r, c: matrix[np.ix_(r, c)]


def test_choose_roles_prefers_fallback_on_ties_and_takes_strict_winners():
    q = {
        "global": TrialQuality(0.5, 0.7, 10, 10),
        "fused": TrialQuality(0.5, 0.9, 10, 10),  # ties on rank-1, wins AUROC
        "sift": TrialQuality(0.4, None, 10, 0),
    }
    roles = choose_roles(q, "global")
    assert (roles.rank_by, roles.decide_by) == ("global", "fused")
    q["sift"] = TrialQuality(0.6, 0.5, 10, 10)
    assert choose_roles(q, "global").rank_by == "sift"
    q["sift"] = TrialQuality(0.51, 0.71, 10, 10)  # better, but within the margin: noise
    assert (choose_roles(q, "global").rank_by, choose_roles(q, "global").decide_by) == (
        "global",
        "fused",
    )
    assert choose_roles(q, "global", margin=0.0).rank_by == "sift"
    with pytest.raises(ValueError, match="fallback"):
        choose_roles({"fused": q["fused"]}, "global")
    again = Roles.from_dict(roles.to_dict())
    assert again == roles


def test_measure_roles_splits_the_jobs_between_two_scores():
    labels, groups, rank, decide = _toy()
    roles = measure_roles({"rank": _fn(rank), "decide": _fn(decide)}, labels, groups, "decide")
    assert roles.rank_by == "rank"
    assert roles.decide_by == "decide"
    assert roles.quality["rank"].rank1 == 1.0
    assert roles.quality["decide"].rank1 < 0.8


def test_combined_trials_take_rank1_from_one_score_and_auroc_from_the_other():
    labels, groups, rank, decide = _toy()
    by_rank = loo_trials_of(_fn(rank), labels, groups)
    by_decide = loo_trials_of(_fn(decide), labels, groups)
    got = trial_quality(combined_trials(by_rank, by_decide))
    assert got.rank1 == trial_quality(by_rank).rank1 == 1.0
    assert got.auroc == trial_quality(by_decide).auroc
    assert got.auroc > trial_quality(by_rank).auroc + 0.1


def test_ranked_decided_names_by_one_score_and_scores_by_the_other():
    """Queries absent from the gallery (as in the field): the best individual is ``rank``'s,
    its score exactly ``decide``'s best over the gallery."""
    labels, groups, rank, decide = _toy(1)
    gallery = np.flatnonzero(np.arange(len(labels)) % 3 != 0)  # two photos of each individual
    queries = np.flatnonzero(np.arange(len(labels)) % 3 == 0)
    both = ranked_decided(_fn(rank), _fn(decide), groups)(queries, gallery)
    named = labels[gallery][both.argmax(1)]
    assert (named == labels[gallery][rank[np.ix_(queries, gallery)].argmax(1)]).all()
    assert (named == labels[queries]).all()
    best = decide[np.ix_(queries, gallery)].max(1)
    assert (both.max(1) == best).all()
    assert (both <= best[:, None]).all() and (both >= best[:, None] - RANK_WEIGHT).all()


def test_ranked_decided_ignores_the_querys_own_sighting():
    """A photo of the query's own sighting must not set the decision score: the trials leave
    it out (where it is a query), so must the row's best."""
    groups = np.array([0, 0, 1])  # photos 0 and 1: one sighting
    decide = np.array([[1.0, 0.99, 0.3], [0.99, 1.0, 0.3], [0.3, 0.3, 1.0]])
    both = ranked_decided(_fn(decide), _fn(decide), groups)
    row = both(np.array([0]), np.array([1, 2]))
    assert row[0, 1] == 0.3  # the best other-sighting photo keeps the decision score
    assert row[0, 0] < row[0, 1]  # the own-sighting photo neither decides nor ranks first


def test_enrolled_split_keeps_later_photos_from_vouching_for_each_other():
    """Two later photos of one sighting day match each other (same scene), not the enrolled
    photo: trials among all photos reward that; trials of later photos against enrolled ones,
    as in the field, do not."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), 3)
    groups = np.arange(len(labels))
    enrolled = np.arange(len(labels)) % 3 == 0
    same = labels[:, None] == labels[None, :]
    later_pair = same & ~enrolled[:, None] & ~enrolled[None, :]
    leaky = np.where(later_pair, 0.9, rng.uniform(0.1, 0.5, same.shape))
    everywhere = measure_roles({"leaky": _fn(leaky)}, labels, groups, "leaky")
    field = measure_roles({"leaky": _fn(leaky)}, labels, groups, "leaky", enrolled=enrolled)
    assert everywhere.quality["leaky"].rank1 > 0.6
    assert field.quality["leaky"].rank1 < 0.5
    assert field.quality["leaky"].num_known == 20  # the later photos only
