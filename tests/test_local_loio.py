"""Local scorers in the LOIO benchmark (reid.evaluation.local_methods, reid.matching.pairs):
photos of synthetic salamander heads turned any way round, a global score that knows nothing,
and the local scorer still names the individual; the fused score is a calibrated probability."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from reid.evaluation.local_methods import local_methods
from reid.gallery import ImageRecord
from reid.matching.local import make_scorer
from reid.matching.pairs import extract_all, pair_matrix, score_pairs, shortlist_pairs
from reid.synthetic.draw import make_pattern, render_head

INDIVIDUALS, PHOTOS = 12, 3


def _photos(folder: Path) -> list[ImageRecord]:
    """PHOTOS shots of each of INDIVIDUALS heads, each turned by a random angle; one sighting
    per shot."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(INDIVIDUALS):
        name = f"JGS{i:03d}"
        for k in range(PHOTOS):
            image, _ = render_head(make_pattern(name, 0), np.random.default_rng(k), "morning", 224)
            turn = cv2.getRotationMatrix2D((112, 112), float(rng.uniform(-180, 180)), 1.0)
            image = cv2.warpAffine(image, turn, (224, 224), borderMode=cv2.BORDER_REFLECT)
            path = folder / f"{name}_{k}.png"
            Image.fromarray(image).save(path)
            records.append(ImageRecord(path, name, sighting=str(k)))
    return records


def test_pairs_shortlist_each_photo_with_its_nearest_once():
    vectors = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2]]
    pairs = shortlist_pairs(vectors, [0, 1, 2, 3, 4], 1)
    assert {tuple(p) for p in pairs.tolist()} >= {(0, 1), (2, 3)}
    assert (pairs[:, 0] < pairs[:, 1]).all() and len(np.unique(pairs, axis=0)) == len(pairs)
    matrix = pair_matrix(5, pairs, np.arange(len(pairs), dtype=np.float32))
    assert np.isnan(matrix[0, 2]) and matrix[0, 1] == matrix[1, 0]


def test_unreadable_photo_has_no_features_and_scores_zero(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    good = _photos(tmp_path)[:1]
    scorer = make_scorer("sift", max_side=224)
    features = extract_all(scorer, [*good, ImageRecord(bad, "x")], progress=False)
    assert features[0] is not None and features[1] is None
    assert score_pairs(scorer, features, np.array([[0, 1]]), progress=False)[0] == 0.0


def test_local_scorer_names_turned_heads_a_blind_global_score_cannot(tmp_path):
    records = _photos(tmp_path)
    n = len(records)
    labels = np.array([r.individual for r in records], dtype=object)
    groups = np.array([f"{r.individual}/{r.sighting}" for r in records], dtype=object)
    blind = np.random.default_rng(1).normal(size=(n, 8)).astype(np.float32)  # knows nothing
    blind /= np.linalg.norm(blind, axis=1, keepdims=True)
    test_rows = np.arange(n // 2)  # the first 6 individuals
    cal_rows = np.arange(n // 2, n)
    methods, report = local_methods(
        records, labels, groups, blind, test_rows=test_rows, calibration_rows=cal_rows,
        scorers=["sift"], shortlist=n, upright=False, work=tmp_path / "work",
    )  # fmt: skip
    sift, fused, stacked, guarded = methods
    assert sift.name == "sift" and fused.name.startswith("fused")
    # against a blind global score, local evidence takes both jobs in the calibration trials
    assert report.roles["rank_by"] != "frozen" and report.roles["decide_by"] != "frozen"
    assert guarded.name == (f"guarded (rank: {report.roles['rank_by']}; "
                            f"NEW: {report.roles['decide_by']})")  # fmt: skip
    assert stacked.name.startswith("stacked") and report.stacking_weights["sift"] > 0
    # each test photo's best other test photo is the same individual's, at any rotation
    sims = sift.sims(test_rows, test_rows)
    np.fill_diagonal(sims, -np.inf)
    assert np.mean(labels[sims.argmax(1)] == labels[test_rows]) >= 0.9
    # the fused score is a probability, high for the same individual, low for another
    p = fused.sims(test_rows, test_rows)
    same = labels[test_rows][:, None] == labels[test_rows][None, :]
    off = ~np.eye(len(test_rows), dtype=bool)
    assert 0.0 <= p.min() and p.max() <= 1.0
    assert p[same & off].mean() > 0.5 > p[~same].mean()
    assert report.ece_held_out["fused"] <= 0.15 and Path(report.reliability_png).is_file()
    # discovery: the test individuals' photos grouped by the fused score find the individuals,
    # the blind global score does not
    found, blind_found = report.discovery[fused.name], report.discovery["frozen backbone"]
    assert found["true"] == 6 and found["photos"] == len(test_rows)
    assert found["ari"] >= 0.8 and abs(found["count_error"]) <= 1
    assert blind_found["ari"] < 0.5


def test_foreground_mask_reaches_the_local_scores(tmp_path):
    """With --foreground the keypoints outside the attended part are dropped before matching:
    a map that attends to nothing of the head (a corner) leaves fewer correspondences."""
    records = _photos(tmp_path)
    n = len(records)
    labels = np.array([r.individual for r in records], dtype=object)
    groups = np.array([f"{r.individual}/{r.sighting}" for r in records], dtype=object)
    vectors = np.random.default_rng(1).normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def corner(rows: list[int]) -> np.ndarray:
        maps = np.zeros((len(rows), 8, 8), np.float32)
        maps[:, :2, :2] = 1.0  # one corner, away from the head in the middle
        return maps

    def run(**extra):
        methods, report = local_methods(
            records, labels, groups, vectors, test_rows=np.arange(n // 2),
            calibration_rows=np.arange(n // 2, n), scorers=["sift"], shortlist=n,
            upright=False, work=tmp_path / "work", **extra,
        )  # fmt: skip
        sims = methods[0].sims(np.arange(n), np.arange(n))
        return float(np.floor(sims).sum()), report

    full, _ = run()
    masked, report = run(foreground=0.1, heat_of=corner, heat_key="corner")
    assert report.foreground == 0.1 and masked < 0.5 * full
    assert list((tmp_path / "work" / "local_cache").glob("attention_*.npy"))
