"""Identification error carried into N (reid.ecology.uncertain)."""

from __future__ import annotations

import numpy as np
import pytest

from reid.ecology.closed import m0
from reid.ecology.uncertain import (
    draw_partition,
    error_aware_estimate,
    histories_of,
    threshold_curve,
)


def _survey(seed: int, sd: float, n: int = 120, t: int = 5):
    """Photos of a simulated survey and calibrated P(same) from noisy scores (the posterior
    of two Gaussian score distributions at the true share of same-animal pairs)."""
    rng = np.random.default_rng(seed)
    caught = rng.random((n, t)) < rng.uniform(0.3, 0.5, n)[:, None]
    animal, occasion = np.nonzero(caught)
    same = animal[:, None] == animal[None, :]
    score = np.where(same, 2.0, -2.0) + np.triu(rng.normal(0, sd, same.shape), 1)
    score = np.triu(score, 1) + np.triu(score, 1).T
    prior = (same.sum() - len(animal)) / (len(animal) ** 2 - len(animal))
    p = 1 / (1 + np.exp(-(4 * score / sd**2 + np.log(prior / (1 - prior)))))
    np.fill_diagonal(p, 1.0)
    return p, occasion, animal, t


def test_histories_of_marks_each_animal_on_its_occasions():
    m = histories_of(np.array([5, 5, 2, 9]), np.array([0, 2, 1, 1]), 3)
    assert m.tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]  # labels 2, 5, 9 in order


def test_certain_identification_is_drawn_unchanged():
    labels = np.array([0, 0, 1, 2, 2, 2])
    p = (labels[:, None] == labels[None, :]).astype(float)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert draw_partition(p, labels, rng).tolist() == [0, 0, 1, 2, 2, 2]


def test_uncertain_links_split_and_merge_in_proportion():
    # photos 0, 1 grouped with P 0.5 between them; group {2} is 0.3 alike to {3}
    p = np.array([[1, 0.5, 0, 0], [0.5, 1, 0, 0], [0, 0, 1, 0.3], [0, 0, 0.3, 1]], float)
    labels = np.array([0, 0, 1, 2])
    rng = np.random.default_rng(1)
    draws = [draw_partition(p, labels, rng) for _ in range(2000)]
    split = np.mean([d[0] != d[1] for d in draws])
    merged = np.mean([d[2] == d[3] for d in draws])
    assert split == pytest.approx(0.5, abs=0.05) and merged == pytest.approx(0.3, abs=0.05)


def test_error_aware_interval_covers_n_when_identification_is_good():
    covered_naive, covered_aware, widths = 0, 0, []
    for seed in range(6):
        p, occasion, _, t = _survey(seed, sd=0.8)
        r = error_aware_estimate(p, occasion, t, 0.5, m0, draws=15, seed=seed)
        covered_naive += r.naive.n_hat.lcl <= 120 <= r.naive.n_hat.ucl
        covered_aware += r.n_hat.lcl <= 120 <= r.n_hat.ucl
        widths.append((r.n_hat.ucl - r.n_hat.lcl) - (r.naive.n_hat.ucl - r.naive.n_hat.lcl))
        assert 0.0 < r.between_share < 1.0 and len(r.draws) + r.failed_draws == 15
    assert covered_aware >= 5 and covered_aware >= covered_naive
    assert np.mean(widths) > 0  # identification error widens the interval


def test_threshold_curve_counts_more_individuals_at_a_stricter_cut():
    p, occasion, animal, t = _survey(0, sd=1.0)
    rows = threshold_curve(p, occasion, t, [(0.01, 0.9), (0.05, 0.5), (0.2, 0.1)], m0)
    counts = [r["individuals"] for r in rows]
    assert counts[0] >= counts[1] >= counts[2]
    assert all(r["n_hat"] is None or r["lcl"] <= r["n_hat"] <= r["ucl"] for r in rows)


def test_pooled_interval_is_the_single_draw_interval_when_draws_agree_and_wider_when_not():
    from reid.ecology.estimate import lognormal_n
    from reid.ecology.uncertain import pooled_n

    same = pooled_n([120.0] * 10, [25.0] * 10, [100.0] * 10)
    one = lognormal_n(100, 20.0, 25.0)
    assert (same.estimate, same.lcl, same.ucl) == pytest.approx((one.estimate, one.lcl, one.ucl),
                                                                rel=1e-4)  # fmt: skip
    spread = pooled_n([110.0, 130.0] * 5, [25.0] * 10, [100.0] * 10)
    assert spread.estimate == pytest.approx(120.0)
    assert spread.lcl < one.lcl and spread.ucl > one.ucl


def test_pooled_interval_at_the_boundary_holds_its_estimate():
    from reid.ecology.uncertain import pooled_n

    for tiny in (0.0, 4e-11, 1e-12):
        n = pooled_n([6.0 + tiny] * 5, [0.0] * 5, [6.0] * 5)
        assert n.lcl <= n.estimate <= n.ucl
