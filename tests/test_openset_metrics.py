"""Open-set metrics against values computed by hand."""

import json

import numpy as np
import pytest

from reid.evaluation.metrics import openset_metrics, openset_scores, softmax_openset_metrics

# 3 gallery images of 2 individuals; 5 queries: a, b, b known, c and d unknown (not in gallery)
GALLERY = ["a", "a", "b"]
QUERIES = ["a", "b", "b", "c", "d"]
SIMS = np.array(
    [
        [0.9, 0.3, 0.2],  # a: best a=.9, b=.2 -> predicts a, score .9, correct
        [0.1, 0.4, 0.6],  # b: a=.4, b=.6 -> predicts b, score .6, correct
        [0.8, 0.5, 0.3],  # b: a=.8, b=.3 -> predicts a, score .8, WRONG (b second)
        [0.2, 0.7, 0.1],  # c: a=.7, b=.1 -> predicts a, score .7 (unknown)
        [0.5, 0.0, 0.4],  # d: a=.5, b=.4 -> predicts a, score .5 (unknown)
    ]
)


def test_openset_scores_best_image_per_individual():
    individuals, per_individual, order = openset_scores(SIMS, GALLERY)
    assert list(individuals) == ["a", "b"]
    np.testing.assert_allclose(
        per_individual, [[0.9, 0.2], [0.4, 0.6], [0.8, 0.3], [0.7, 0.1], [0.5, 0.4]]
    )
    np.testing.assert_array_equal(order, [[0, 1], [1, 0], [0, 1], [0, 1], [0, 1]])
    # ties are broken stably: the individual that sorts first wins
    _, _, order = openset_scores(np.array([[0.5, 0.5, 0.5]]), ["z", "y", "x"])
    np.testing.assert_array_equal(order, [[0, 1, 2]])


def test_hand_computed_example():
    m = openset_metrics(
        SIMS, GALLERY, QUERIES, threshold=0.65, fmr_points=(0.01, 0.5), ranks=(1, 2)
    )
    assert (m["num_known"], m["num_unknown"]) == (3, 2)
    assert (m["num_gallery_images"], m["num_gallery_individuals"]) == (3, 2)
    # known scores .9 .6 .8 vs unknown .7 .5: known > unknown in 5 of the 6 pairs (.6 < .7)
    assert m["auroc"] == pytest.approx(5 / 6)
    # closed-set: queries 0 and 1 right, query 2's true individual is second
    assert m["rank1"] == pytest.approx(2 / 3)
    assert m["rank2"] == pytest.approx(1.0)
    # OSCR, thresholds descending (FPR, CCR): .9 (0, 1/3), .8 (0, 1/3) [wrong], .7 (1/2, 1/3),
    # .6 (1/2, 2/3), .5 (1, 2/3); area = 1/2 * 1/3 + 1/2 * 2/3 = 1/2
    assert m["oscr"] == pytest.approx(0.5)
    # FMR 1%: k = floor(.01 * 2) = 0 -> t just above the highest unknown (.7); knowns .9 .8 above,
    # only .9 correct
    assert m["threshold_at_fmr_1"] > 0.7 and m["threshold_at_fmr_1"] == pytest.approx(0.7)
    assert m["tpr_at_fmr_1"] == pytest.approx(2 / 3)
    assert m["ccr_at_fmr_1"] == pytest.approx(1 / 3)
    # FMR 50%: k = 1 -> t just above the second unknown (.5): one unknown (.7) accepted, all knowns
    assert m["threshold_at_fmr_50"] > 0.5 and m["threshold_at_fmr_50"] == pytest.approx(0.5)
    assert m["tpr_at_fmr_50"] == pytest.approx(1.0)
    assert m["ccr_at_fmr_50"] == pytest.approx(2 / 3)
    # threshold .65: decisions a, NEW, a, a, NEW -> right: q0 only among knowns; q4 flagged
    # BAKS = mean(a: 1/1, b: 0/2) = 1/2; BAUS = mean(c: 0/1, d: 1/1) = 1/2
    assert m["baks"] == pytest.approx(0.5)
    assert m["baus"] == pytest.approx(0.5)
    assert m["baks_baus_gmean"] == pytest.approx(0.5)
    assert m["known_accepted"] == pytest.approx(1 / 3)
    assert m["unknown_flagged"] == pytest.approx(1 / 2)
    # image-level AP: q0 relevant g0 (1st), g1 (2nd) -> 1; q1 relevant g2 (1st) -> 1;
    # q2 relevant g2 (3rd) -> 1/3; mAP = 7/9
    assert m["map"] == pytest.approx(7 / 9)
    assert m["roc"]["fpr"][0] == 0 and m["roc"]["tpr"][-1] == 1 and m["roc"]["fpr"][-1] == 1
    json.dumps(m)  # plain Python values only
    assert all(not isinstance(v, np.generic) for v in m.values())


def test_softmax_shares_the_score_based_metrics():
    # the same scores and predictions as the hand example, from a classifier of classes a, b
    s = softmax_openset_metrics(
        [0.9, 0.6, 0.8, 0.7, 0.5],
        ["a", "b", "a", "a", "a"],
        QUERIES,
        ["a", "b"],
        threshold=0.65,
        fmr_points=(0.01, 0.5),
    )
    m = openset_metrics(SIMS, GALLERY, QUERIES, threshold=0.65, fmr_points=(0.01, 0.5))
    for key in ["auroc", "oscr", "rank1", "baks", "baus", "tpr_at_fmr_1", "ccr_at_fmr_50", "roc"]:
        assert s[key] == m[key], key
    assert s["num_known_classes"] == 2 and s["rank5"] is None and s["map"] is None


def test_perfect_separation():
    # every known scores above every unknown; one of the 3 knowns is misidentified
    sims = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.3], [0.2, 0.1]])
    m = openset_metrics(sims, ["a", "b"], ["a", "b", "b", "x", "y"], threshold=0.5)
    assert m["auroc"] == 1.0
    assert m["rank1"] == pytest.approx(2 / 3)
    assert m["oscr"] == pytest.approx(m["rank1"])
    assert m["tpr_at_fmr_1"] == 1.0 and m["ccr_at_fmr_1"] == pytest.approx(2 / 3)
    assert m["baus"] == 1.0 and m["baks"] == pytest.approx((1 + 1 / 2) / 2)


def test_oscr_ties_are_a_diagonal_step():
    # a correct known and an unknown with the same score: OSCR = AUROC = 1/2
    m = openset_metrics(np.array([[0.5], [0.5]]), ["a"], ["a", "x"])
    assert m["auroc"] == pytest.approx(0.5)
    assert m["oscr"] == pytest.approx(0.5)


def test_ties_at_the_threshold_never_exceed_the_fmr():
    # 100 unknowns: 3 at .9, 5 at .8 (across the k = 5 boundary), 92 below; knowns at .85 and .8
    unknown = np.r_[[0.9] * 3, [0.8] * 5, np.linspace(0.1, 0.7, 92)]
    sims = np.r_[[0.85, 0.8], unknown][:, None]
    labels = ["a", "a"] + [f"u{i}" for i in range(100)]
    m = openset_metrics(sims, ["a"], labels, fmr_points=(0.05, 0.03, 0.01))
    t = m["threshold_at_fmr_5"]
    assert 0.8 < t <= np.nextafter(0.8, 1)
    assert np.count_nonzero(unknown >= t) == 3  # the tied .8s stay out: FMR 3% <= 5%
    assert m["tpr_at_fmr_5"] == 0.5 and m["ccr_at_fmr_5"] == 0.5
    assert m["threshold_at_fmr_3"] == t  # k = 3 lands on the same tie
    assert m["threshold_at_fmr_1"] > 0.9 and m["tpr_at_fmr_1"] == 0.0  # k = 1 inside the .9 tie
    # distinct unknown scores: exactly floor(f * 100) unknowns at or above the threshold
    unknown = np.linspace(0.0, 0.99, 100)
    sims = np.r_[[0.5], unknown][:, None]
    m = openset_metrics(sims, ["a"], ["a"] + [f"u{i}" for i in range(100)], fmr_points=(0.05,))
    assert np.count_nonzero(unknown >= m["threshold_at_fmr_5"]) == 5


def test_rank1_and_rank5_equal_brute_force():
    rng = np.random.default_rng(0)
    gallery = [f"id{i}" for i in rng.integers(0, 12, 40)]
    queries = [f"id{i}" for i in rng.integers(0, 15, 60)]  # id12-id14 never in the gallery
    sims = rng.uniform(-1, 1, (60, 40)).round(1)  # rounded: many ties
    m = openset_metrics(sims, gallery, queries)
    individuals = sorted(set(gallery))
    hits1, hits5 = [], []
    for q, label in enumerate(queries):
        if label not in individuals:
            continue
        best = [
            max(s for s, g in zip(sims[q], gallery, strict=True) if g == ind) for ind in individuals
        ]
        hits1.append(individuals[int(np.argmax(best))] == label)  # argmax: first of ties
        ranked = sorted(range(len(individuals)), key=lambda i: -best[i])  # stable
        hits5.append(label in [individuals[i] for i in ranked[:5]])
    assert m["num_known"] == len(hits1)
    assert m["rank1"] == pytest.approx(np.mean(hits1))
    assert m["rank5"] == pytest.approx(np.mean(hits5))


def test_map_hand_computed():
    gallery = ["a", "b", "a", "b"]
    sims = np.array(
        [
            [0.9, 0.8, 0.3, 0.1],  # a: relevant at ranks 1, 3 -> AP = (1/1 + 2/3) / 2 = 5/6
            [0.9, 0.1, 0.8, 0.7],  # b: relevant at ranks 3, 4 -> AP = (1/3 + 2/4) / 2 = 5/12
            [0.5, 0.5, 0.5, 0.5],  # x: unknown, left out of mAP
        ]
    )
    m = openset_metrics(sims, gallery, ["a", "b", "x"])
    assert m["map"] == pytest.approx((5 / 6 + 5 / 12) / 2)


def test_empty_groups_give_none_and_no_threshold_keys():
    m = openset_metrics(SIMS[:3], GALLERY, QUERIES[:3])  # no unknowns
    assert m["num_unknown"] == 0 and m["rank1"] == pytest.approx(2 / 3)
    assert m["auroc"] is None and m["oscr"] is None and m["roc"] is None
    assert m["tpr_at_fmr_5"] is None and m["threshold_at_fmr_5"] is None
    assert "baks" not in m and "baus" not in m
    m = openset_metrics(SIMS[3:], GALLERY, QUERIES[3:], threshold=0.6)  # no knowns
    assert m["rank1"] is None and m["rank5"] is None and m["map"] is None and m["oscr"] is None
    assert m["baks"] is None and m["baks_baus_gmean"] is None and m["baus"] == 0.5
    json.dumps(m)


def test_value_errors():
    with pytest.raises(ValueError, match="2-D"):
        openset_metrics(np.zeros(3), GALLERY, ["a"])
    with pytest.raises(ValueError, match="at least one"):
        openset_metrics(np.zeros((0, 3)), GALLERY, [])
    with pytest.raises(ValueError, match="at least one"):
        openset_metrics(np.zeros((2, 0)), [], ["a", "b"])
    with pytest.raises(ValueError, match="gallery_labels"):
        openset_metrics(SIMS, ["a", "b"], QUERIES)
    with pytest.raises(ValueError, match="query_labels"):
        openset_metrics(SIMS, GALLERY, QUERIES[:4])
    with pytest.raises(ValueError, match="NaN"):
        openset_scores(np.array([[np.nan]]), ["a"])
    with pytest.raises(ValueError, match="fmr_points"):
        openset_metrics(SIMS, GALLERY, QUERIES, fmr_points=(5,))
    with pytest.raises(ValueError, match="equal lengths"):
        softmax_openset_metrics([0.9, 0.8], ["a"], ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="non-empty"):
        softmax_openset_metrics([], [], [], ["a"])
    with pytest.raises(ValueError, match="known_labels"):
        softmax_openset_metrics([0.9], ["a"], ["a"], [])
