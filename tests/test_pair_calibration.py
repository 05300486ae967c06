"""Pair calibration (raw scorer score -> P(same individual)) and its reliability measures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from reid.matching.calibration import (
    PairCalibrator,
    expected_calibration_error,
    reliability_plot,
)

METHODS = ("isotonic", "platt")


def count_pairs(n: int, separation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n impostor and n genuine 'inlier counts'; genuine counts grow with ``separation``."""
    rng = np.random.default_rng(seed)
    negative = rng.poisson(3.0, n)
    positive = rng.poisson(3.0 + separation, n)
    same = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    return np.r_[negative, positive].astype(np.float64), same


@pytest.mark.parametrize("method", METHODS)
def test_monotone_in_unit_interval_beyond_fit_range(method):
    scores, same = count_pairs(300, 6.0)
    cal = PairCalibrator.fit(scores, same, method, scorer="sift")
    grid = np.linspace(-50, 500, 2001)  # far outside the fitted 0..~25
    p = cal(grid)
    assert p.shape == grid.shape
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) >= -1e-12)
    assert p[-1] > 0.9 and p[0] < 0.1
    assert cal.scorer == "sift" and cal.num_same == 300 and cal.num_different == 300
    # any shape in, same shape out; NaN (pair not scored) stays NaN
    out = cal(np.array([[1.0, np.nan], [30.0, 2.0]]))
    assert out.shape == (2, 2) and np.isnan(out[0, 1]) and not np.isnan(out).sum() > 1


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_through_json(method):
    scores, same = count_pairs(200, 5.0, seed=1)
    cal = PairCalibrator.fit(scores, same, method, scorer="xfeat")
    text = json.dumps(cal.to_dict())
    back = PairCalibrator.from_dict(json.loads(text))
    assert back == cal
    probe = np.linspace(-5, 60, 101)
    np.testing.assert_array_equal(back(probe), cal(probe))
    with pytest.raises(ValueError):
        PairCalibrator.from_dict({**cal.to_dict(), "format": 99})


@pytest.mark.parametrize("method", METHODS)
def test_separated_scores_give_confident_probabilities(method):
    far, same = count_pairs(500, 60.0, seed=2)  # no overlap at all
    cal = PairCalibrator.fit(far, same, method)
    # Platt's smoothed targets leave the pairs next to the (unknown) boundary less certain
    assert np.quantile(cal(far[~same]), 0.95) < 0.02
    assert np.quantile(cal(far[same]), 0.05) > 0.98
    near, same_near = count_pairs(500, 1.0, seed=2)  # heavy overlap: nothing is certain
    weak = PairCalibrator.fit(near, same_near, method)
    assert 0.1 < weak(np.median(near)) < 0.9


def test_isotonic_on_few_pairs_does_not_claim_certainty():
    scores, same = count_pairs(12, 20.0, seed=3)  # 24 pairs, perfectly separated
    cal = PairCalibrator.fit(scores, same, "isotonic", min_bin=10)
    # every step holds >= 10 pairs and is smoothed: never exactly 0 or 1
    assert 0 < min(cal.y) and max(cal.y) < 1
    assert len(cal.y) <= 2 * (24 // 10)
    raw = PairCalibrator.fit(scores, same, "isotonic", min_bin=1, prior=0.0)
    assert min(raw.y) == 0 and max(raw.y) == 1  # the unprotected fit does claim it


def test_platt_picks_the_transform_that_fits():
    rng = np.random.default_rng(4)
    n = 2000  # both classes log-normal: the log-odds are linear in log(count)
    scores = np.round(np.exp(np.r_[rng.normal(np.log(4), 0.9, n), rng.normal(np.log(40), 0.9, n)]))
    same = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    assert PairCalibrator.fit(scores, same, "platt").transform == "log1p"
    cosines = np.r_[rng.normal(0.1, 0.2, n), rng.normal(0.6, 0.2, n)]  # may be negative
    assert PairCalibrator.fit(cosines, same, "platt").transform == "identity"


@pytest.mark.parametrize(
    ("scores", "same", "message"),
    [
        (np.arange(20.0), np.zeros(20, bool), "same-individual"),
        (np.arange(20.0), np.ones(20, bool), "same-individual"),
        (np.arange(6.0), np.r_[np.zeros(3, bool), np.ones(3, bool)], "at least"),
        (np.r_[np.nan, np.arange(19.0)], np.arange(20) % 2 == 0, "NaN"),
        (np.r_[np.inf, np.arange(19.0)], np.arange(20) % 2 == 0, "infinite"),
        (np.arange(20.0), np.ones(19, bool), "arrays"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_input_is_refused(method, scores, same, message):
    with pytest.raises(ValueError, match=message):
        PairCalibrator.fit(scores, same, method)


def test_unknown_method_and_transform_are_refused():
    scores, same = count_pairs(50, 5.0)
    with pytest.raises(ValueError, match="method"):
        PairCalibrator.fit(scores, same, "histogram")
    with pytest.raises(ValueError, match="non-negative"):
        PairCalibrator.fit(scores - 10, same, "platt", transform="log1p")


def test_ece_small_when_calibrated_large_when_not():
    rng = np.random.default_rng(5)
    p = rng.random(20000)
    same = rng.random(20000) < p  # P(same | p) = p exactly
    assert expected_calibration_error(p, same) < 0.03
    overconfident = np.where(p > 0.5, 1.0, 0.0)
    assert expected_calibration_error(overconfident, same) > 0.2
    squashed = 0.5 + 0.1 * (p - 0.5)  # right order, wrong scale
    assert expected_calibration_error(squashed, same) > 0.15
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([1.5]), np.array([True]))


def test_calibrated_scores_have_small_ece_on_fresh_pairs():
    scores, same = count_pairs(2000, 5.0, seed=6)
    fresh, fresh_same = count_pairs(2000, 5.0, seed=7)
    for method in METHODS:
        cal = PairCalibrator.fit(scores, same, method)
        assert expected_calibration_error(cal(fresh), fresh_same) < 0.03, method


def test_reliability_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(8)
    p = rng.random(500)
    same = rng.random(500) < p
    path = reliability_plot(p, same, tmp_path / "reliability.png", "sift (isotonic)")
    assert path == tmp_path / "reliability.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width > 300 and height > 300
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # something was drawn, not a blank canvas
