"""Fusing calibrated scorers, per-individual scores, fused trials, and LNBNN weighting."""

from __future__ import annotations

import numpy as np
import pytest

from reid.evaluation.metrics import openset_metrics, openset_scores
from reid.gallery.threshold import fit_threshold
from reid.matching.distinct import lnbnn_weights, pool_descriptors, reweight
from reid.matching.fusion import (
    as_similarity,
    fit_logodds,
    fuse,
    fused_trials,
    individual_scores,
)
from reid.matching.local.features import Correspondences, LocalFeatures

NAN = np.nan


def test_mean_over_the_scorers_present():
    cosine = np.array([[0.9, 0.2], [0.4, 0.6]])
    sift = np.array([[0.7, NAN], [NAN, NAN]])
    xfeat = np.array([[0.5, 0.8], [NAN, NAN]])
    fused = fuse({"cosine": cosine, "sift": sift, "xfeat": xfeat})
    np.testing.assert_allclose(fused, [[0.7, 0.5], [0.4, 0.6]])
    weighted = fuse({"cosine": cosine, "sift": sift}, weights={"cosine": 1.0, "sift": 3.0})
    np.testing.assert_allclose(weighted, [[0.75, 0.2], [0.4, 0.6]])
    nothing = fuse({"sift": np.array([[NAN, 0.3]])})
    assert np.isnan(nothing[0, 0]) and nothing[0, 1] == pytest.approx(0.3)


def test_logodds_is_the_product_of_odds():
    a, b = np.array([[0.8, 0.5, NAN]]), np.array([[0.8, 0.9, 0.9]])
    fused = fuse({"a": a, "b": b}, "logodds")
    np.testing.assert_allclose(fused, [[16 / 17, 0.9, 0.9]])  # odds 4 x 4 = 16; 1 x 9; 9
    assert fuse({"a": a, "b": b}, "mean")[0, 0] == pytest.approx(0.8)


def test_fuse_refuses_bad_input():
    with pytest.raises(ValueError):
        fuse({})
    with pytest.raises(ValueError, match="shape"):
        fuse({"a": np.zeros((2, 2)), "b": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fuse({"a": np.array([[1.5]])})
    with pytest.raises(ValueError, match="weights"):
        fuse({"a": np.zeros((1, 1))}, weights={"b": 1.0})
    with pytest.raises(ValueError, match="rule"):
        fuse({"a": np.zeros((1, 1))}, rule="max")


def test_fit_logodds_discounts_a_duplicated_scorer():
    rng = np.random.default_rng(0)
    n = 4000
    same = rng.random(n) < 0.5
    evidence = np.where(same, 1.5, -1.5) + rng.normal(0, 1.5, n)
    p = 1 / (1 + np.exp(-evidence * 4 / 3))  # roughly calibrated
    weights, bias = fit_logodds({"sift": p, "sift_again": p.copy()}, same)
    # one scorer's evidence, counted twice: the weights share it instead of doubling it
    assert sum(weights.values()) == pytest.approx(1.0, abs=0.15)
    assert abs(bias) < 0.2


def test_individual_scores_match_openset_scores():
    rng = np.random.default_rng(1)
    fused = rng.random((6, 9))
    labels = ["b", "a", "c", "a", "b", "c", "c", "a", "d"]
    individuals, scores = individual_scores(fused, labels)
    ref_individuals, ref_scores, _ = openset_scores(fused, labels)
    assert list(individuals) == list(ref_individuals)
    np.testing.assert_array_equal(scores, ref_scores)
    fused[0, [1, 3, 7]] = NAN  # individual "a" not scored for query 0: fill
    _, filled = individual_scores(fused, labels, fill=0.0)
    assert filled[0, 0] == 0.0


def test_fused_matrix_feeds_openset_metrics_and_fit_threshold():
    gallery = ["a", "a", "b", "c"]
    queries = ["a", "b", "x", "y"]  # x, y never seen: unknown
    fused = np.array(
        [
            [0.9, NAN, 0.1, 0.2],
            [0.2, 0.1, 0.8, NAN],
            [0.3, NAN, NAN, 0.25],
            [NAN, NAN, NAN, NAN],  # outside every shortlist
        ]
    )
    metrics = openset_metrics(as_similarity(fused), gallery, queries, threshold=0.5)
    assert metrics["rank1"] == 1.0 and metrics["auroc"] == 1.0
    assert metrics["unknown_flagged"] == 1.0 and metrics["known_accepted"] == 1.0
    trials = fused_trials(fused, gallery, queries)
    np.testing.assert_allclose(trials.known_scores, [0.9, 0.8])
    assert trials.known_correct.tolist() == [True, True]
    np.testing.assert_allclose(trials.impostor_scores, [0.3, 0.0])
    fit = fit_threshold(trials, target_fmr=0.0)
    assert 0.3 < fit.threshold <= 0.8 and fit.fmr == 0.0 and fit.tpr == 1.0


# ------------------------------------------------------------------ LNBNN distinctiveness
def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _features(descriptors: np.ndarray) -> LocalFeatures:
    n = len(descriptors)
    return LocalFeatures(
        np.zeros((n, 2), np.float32), descriptors.astype(np.float16), np.ones(n, np.float32), (8, 8)
    )


def test_distinctive_match_outweighs_a_common_one():
    rng = np.random.default_rng(2)
    basis = _unit(rng.normal(size=(6, 32)))
    distinct, common = basis[0], basis[1]

    def near(v):
        return _unit(v + 0.05 * rng.normal(size=v.shape))

    query = _features(np.stack([distinct, common, basis[2]]))
    candidate = _features(np.stack([near(distinct), near(common), basis[3]]))
    # the other individuals share the common pattern (as closely as the candidate does)
    others = pool_descriptors(
        [_features(np.stack([near(common), basis[4]])), _features(np.stack([near(common)]))]
    )
    w = lnbnn_weights(query, np.array([0, 1], np.int32), candidate, others)
    assert w.shape == (2,) and w.dtype == np.float32
    assert w[0] > 0.8  # only the candidate comes close: nearly the full distance to others
    assert w[1] < 0.15  # everyone has it
    assert w[0] > 5 * w[1]
    # no other individuals in the shortlist: everything the candidate matches is distinctive
    alone = lnbnn_weights(query, np.array([0, 1]), candidate, np.zeros((0, 32), np.float32))
    assert np.all(alone > 1.5)
    # k = 2: the normaliser is the second-nearest other descriptor, farther, so weight grows
    assert lnbnn_weights(query, np.array([1]), candidate, others, k=2)[0] >= w[1]


def test_reweight_uses_query_idx():
    rng = np.random.default_rng(3)
    d = _unit(rng.normal(size=(4, 16)))
    query, candidate = _features(d), _features(d[:2])
    xy = np.zeros((2, 2), np.float32)
    corr = Correspondences(xy, xy, np.ones(2, np.float32), query_idx=np.array([0, 1], np.int32))
    others = d[1:2]  # another individual shares descriptor 1
    out = reweight(corr, query, candidate, others)
    assert out.score == pytest.approx(float(lnbnn_weights(query, [0, 1], candidate, others).sum()))
    assert out.weights[0] > 1.0 and out.weights[1] == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="query_idx"):
        reweight(Correspondences(xy, xy, np.ones(2, np.float32)), query, candidate, others)
    with pytest.raises(ValueError, match="query_idx"):
        Correspondences(xy, xy, np.ones(2, np.float32), query_idx=np.array([0], np.int32))
    with pytest.raises(ValueError, match="range"):
        lnbnn_weights(query, np.array([7]), candidate, others)
