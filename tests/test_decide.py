"""Search, re-rank and decide as three steps, on inputs whose answers can be written down."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from reid.gallery import (
    NEW,
    Candidate,
    Gallery,
    ImageRecord,
    TrialScores,
    decide,
    fit_threshold,
    threshold_for_fmr,
)
from reid.gallery.synthetic import fake_photos
from reid.matching import CosineScorer, Probe, Reranker, rerank_and_decide

FP = "model-A"


def cand(name: str, score: float, image_id: int = 0) -> Candidate:
    return Candidate(name, score, image_id, Path(f"{name}.jpg"))


def test_decide_takes_the_best_candidate_unless_below_the_threshold():
    candidates = [cand("b", 0.6), cand("a", 0.8)]  # any order: decide sorts
    known = decide(candidates, threshold=0.7)
    assert (known.decision, known.is_new, known.score) == ("a", False, 0.8)
    assert [c.individual for c in known.candidates] == ["a", "b"]
    assert known.calibrated and known.threshold == 0.7
    new = decide(candidates, threshold=0.81)
    assert (new.decision, new.is_new, new.score) == (NEW, True, 0.8)
    assert decide(candidates, threshold=0.8).decision == "a"  # at the threshold is known


def test_decide_without_threshold_or_candidates():
    uncalibrated = decide([cand("a", -0.5)], threshold=None)
    assert uncalibrated.decision == "a" and not uncalibrated.calibrated
    empty = decide([], threshold=None)
    assert (empty.decision, empty.is_new, empty.score, empty.candidates) == (NEW, True, -1.0, [])


class Swap:
    """A re-ranker that gives the first two candidates each other's scores."""

    name = "swap"

    def rescore(self, probe, candidates):
        out = list(candidates)
        if len(out) >= 2:
            a, b = out[0], out[1]
            out[0], out[1] = (dataclasses.replace(b, score=a.score),
                              dataclasses.replace(a, score=b.score))  # fmt: skip
        return out


def test_decide_on_a_separate_score_keeps_the_named_candidate():
    """One score names (the candidates' order), another calls NEW (the query's score)."""
    named = [cand("B", 0.9), cand("A", 0.4)]
    kept = decide(named, threshold=0.5, score=0.7)
    assert kept.decision == "B" and not kept.is_new and kept.score == 0.7
    new = decide(named, threshold=0.5, score=0.3)
    assert new.is_new and new.decision == NEW and new.candidates[0].individual == "B"
    assert new.score == 0.3


def test_a_reranker_between_search_and_decide_changes_the_decision():
    probe = Probe(Path("q.jpg"), np.array([1.0, 0.0], dtype=np.float32))
    found = [[cand("a", 0.9), cand("b", 0.75)]]
    assert isinstance(Swap(), Reranker) and isinstance(CosineScorer(), Reranker)
    [plain] = rerank_and_decide([probe], found, threshold=0.8)
    [swapped] = rerank_and_decide([probe], found, threshold=0.8, reranker=Swap())
    assert plain.decision == "a" and plain.score == 0.9
    assert swapped.decision == "b" and swapped.score == 0.9
    [below] = rerank_and_decide([probe], [[cand("a", 0.79)]], threshold=0.8, reranker=Swap())
    assert below.is_new


def test_fit_threshold_on_hand_written_trial_scores():
    # 10 impostors; 10 % FMR allows one false match, so the threshold sits just above 0.7.
    impostors = np.array([0.9, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1], dtype=np.float32)
    trials = TrialScores(
        known_scores=np.array([0.95, 0.8, 0.7, 0.85], dtype=np.float32),
        known_correct=np.array([True, True, True, False]),
        impostor_scores=impostors,
    )
    fit = fit_threshold(trials, 0.10)
    assert np.float32(0.7) < fit.threshold == pytest.approx(0.7)
    assert fit.fmr == pytest.approx(0.1)  # only 0.9 passes
    assert fit.tpr == pytest.approx(0.5)  # 0.95 and 0.8 right and above; 0.7 just below
    assert fit.rank1 == pytest.approx(0.75)
    assert (fit.num_known_trials, fit.num_unknown_trials) == (4, 10)


def test_one_threshold_rule_for_metrics_and_gallery():
    from reid.evaluation.metrics import openset_metrics

    sims = np.array([[0.9], [0.8], [0.7], [0.6]])  # one gallery photo of "a"
    m = openset_metrics(sims, ["a"], ["a", "x", "y", "z"], fmr_points=(0.34,))
    unknown = np.array([0.8, 0.7, 0.6])  # one of three may pass: just above 0.7
    assert m["threshold_at_fmr_34"] == threshold_for_fmr(unknown, 0.34, dtype=np.float64)
    assert 0.7 < m["threshold_at_fmr_34"] < 0.7 + 1e-12
    # every unknown may pass: the lowest score of all, so every known passes too
    assert openset_metrics(sims, ["a"], ["a", "x", "y", "z"], fmr_points=(1.0,))[
        "threshold_at_fmr_100"
    ] == pytest.approx(0.6)


@pytest.fixture
def axis_gallery(tmp_path):
    """Three individuals along the axes of 3-d space, one photo each."""
    photos = fake_photos(tmp_path / "photos", 3)
    records = [ImageRecord(p, name) for p, name in zip(photos, "xyz", strict=True)]
    g = Gallery.create(tmp_path / "g", model_fingerprint=FP, embedding_dim=3)
    g.enroll(records, np.eye(3, dtype=np.float32), model_fingerprint=FP)
    yield g
    g.close()


def test_search_returns_cosine_candidates_and_identify_is_search_then_decide(axis_gallery):
    query = np.array([[0.8, 0.6, 0.0]], dtype=np.float32)
    [found] = axis_gallery.search(query, model_fingerprint=FP, top_k=3)
    assert [c.individual for c in found] == ["x", "y", "z"]
    np.testing.assert_allclose([c.score for c in found], [0.8, 0.6, 0.0], atol=1e-6)
    [match] = axis_gallery.identify(query, model_fingerprint=FP, top_k=3)
    assert match == decide(found, axis_gallery.threshold)  # uncalibrated: the best, "x"
    assert match.decision == "x" and not match.calibrated


def test_pipeline_match_path_goes_through_the_reranker(axis_gallery):
    from reid.pipeline import MatchOptions, identify_probes

    probe = Probe(Path("q.jpg"), np.array([0.8, 0.6, 0.0], dtype=np.float32))
    plain = identify_probes(axis_gallery, [probe], FP, MatchOptions(top_k=2, threshold=0.7))
    swapped = identify_probes(
        axis_gallery, [probe], FP, MatchOptions(top_k=2, reranker=Swap(), threshold=0.7)
    )
    assert plain[0].decision == "x" and swapped[0].decision == "y"
    assert identify_probes(axis_gallery, [probe], FP, MatchOptions(threshold=0.9))[0].is_new
    # no threshold given: the gallery's own (uncalibrated here), read with the search
    assert not identify_probes(axis_gallery, [probe], FP, MatchOptions())[0].calibrated
