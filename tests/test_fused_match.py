"""Fused matching in the field path (issue 17): enroll keeps local features, calibrate fits the
fusion, match re-ranks the shortlist with SIFT and decides on the fused probability."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reid.cli.main import app

runner = CliRunner()
CPU = ["--quiet", "--device", "cpu"]


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _run(args: list) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, _plain(result.output)


def _ok(args: list) -> str:
    code, out = _run(args)
    assert code == 0, out
    return out


@pytest.fixture(scope="module")
def fused_gallery(tmp_path_factory, tiny_run, tiny_data) -> Path:
    """tiny_data enrolled with the default local features (sift) and calibrated."""
    gallery = tmp_path_factory.mktemp("fused") / "gallery"
    out = _ok(["enroll", gallery, tiny_data, "--model", tiny_run, *CPU])
    assert "32 with sift-rootsift" in out and "local features" in out
    out = _ok(["calibrate", gallery, "--model", tiny_run, "--target-fmr", "0.1", "--quiet"])
    assert re.search(r"^threshold -?\d\.\d{3}: target", out, re.M)  # the cosine one
    assert re.search(r"^fused P\(same\) threshold \(cosine \+ sift, 50 nearest photos\) "
                     r"0\.\d{3}: target false-match rate 10\.0%", out, re.M)  # fmt: skip
    assert "rank-1 on the gallery: fused" in out
    assert re.search(r"^reid match \(--scorer auto\) will name individuals by \w+ and call NEW "
                     r"by \w+", out, re.M)  # fmt: skip
    return gallery


@pytest.fixture(scope="module")
def turned_photos(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """Photos of enrolled animals that are not in the gallery, turned by 90 degrees."""
    from reid.synthetic.salamanders import synthesize

    out = tmp_path_factory.mktemp("turned")
    more = synthesize(out / "more", 4, 10, seed=3, size=64, num_dates=2, progress=False)
    enrolled = {_sha(p) for p in (tiny_data.parent / "images").rglob("*.jpg")}
    photos = {}
    for p in sorted((more.parent / "images").rglob("*.jpg")):
        individual = p.parent.name
        if _sha(p) not in enrolled and individual not in photos:
            photos[individual] = out / p.name
            Image.open(p).rotate(90, expand=True).save(photos[individual])
    return photos


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_enroll_stores_local_features_and_info_reports_them(fused_gallery):
    info = json.loads(_ok(["gallery", "info", fused_gallery]))
    assert info["local_features"]["num_with_features"] == 32
    assert info["local_features"]["fingerprint"].startswith("sift-")
    assert info["local_scorer"] == {"name": "sift", "settings": {}}
    fused = info["fused_calibration"]
    assert fused["scorer"] == "sift" and fused["shortlist"] == 50
    assert 0.0 < fused["fits"]["fused"]["threshold"] < 1.0
    assert fused["fits"]["fused"]["target_fmr"] == 0.1 and "sift" in fused["fits"]
    assert info["calibration"]["threshold"] == info["threshold"]  # cosine calibration kept


def test_fused_match_names_a_turned_photo(fused_gallery, tiny_run, turned_photos):
    photos = [turned_photos["JGS001"], turned_photos["JGS003"]]
    data = json.loads(_ok(["match", fused_gallery, *photos, "--model", tiny_run, *CPU,
                           "--format", "json", "--scorer", "fused"]))  # fmt: skip
    assert data["scorer"] == "fused" and data["calibration"]["scorer"] == "fused"
    threshold = data["calibration"]["threshold"]
    for row, truth in zip(data["matches"], ["JGS001", "JGS003"], strict=True):
        assert row["decision"] == truth and row["threshold"] == threshold
        for cand in row["candidates"]:
            assert 0.0 <= cand["score"] <= 1.0 and cand["score"] == cand["scores"]["fused"]
            assert set(cand["scores"]) == {"cosine", "sift", "fused"}
        assert row["candidates"][0]["correspondences"] > 0
    # the default scorer (auto) follows the roles calibrate measured on the gallery
    info = json.loads(_ok(["gallery", "info", fused_gallery]))
    roles = info["fused_calibration"]["roles"]
    assert set(roles["quality"]) == {"global", "fused", "sift"}
    data = json.loads(_ok(["match", fused_gallery, photos[0], "--model", tiny_run, *CPU,
                           "--format", "json"]))  # fmt: skip
    both_global = roles["rank_by"] == roles["decide_by"] == "global"
    assert data["scorer"] == ("global" if both_global else "auto")
    assert data["calibration"].get("scorer", "global") == roles["decide_by"]


def _with_roles(monkeypatch, gallery: Path, rank_by: str, decide_by: str):
    """The gallery's fused calibration as read by matching, with these roles."""
    from dataclasses import replace

    import reid.matching.fused as fused_module
    from reid.gallery import Gallery
    from reid.matching.roles import Roles, TrialQuality

    with Gallery.open(gallery) as g:
        stored = fused_module.read_fused(g)
    q = TrialQuality(0.5, 0.5, 10, 10)
    forced = replace(stored, roles=Roles(rank_by, decide_by, {k: q for k in stored.roles.quality}))
    monkeypatch.setattr(fused_module, "read_fused", lambda _g: forced)
    return forced


def test_auto_names_by_fused_and_calls_new_by_the_global_score(
    monkeypatch, fused_gallery, tiny_run, turned_photos
):
    from reid.features.embedder import Embedder
    from reid.gallery import Gallery
    from reid.pipeline import MatchOptions, match_photos, resolve_scorer

    _with_roles(monkeypatch, fused_gallery, "fused", "global")
    embedder = Embedder.from_run(tiny_run, "cpu")
    photo = turned_photos["JGS001"]
    with Gallery.open(fused_gallery) as g:
        _, choice = resolve_scorer(g, MatchOptions())
        assert choice.name == "auto" and choice.decides == "global"
        assert "fused names the individual, global calls NEW" in choice.note
        (row,) = match_photos(g, [photo], embedder, MatchOptions(progress=False))
        vector = embedder.embed_paths([photo], progress=False).embeddings
        (by_cosine,) = g.identify(vector, model_fingerprint=embedder.fingerprint)
        cosine_threshold = g.threshold
    m = row.match
    # NEW is called on the best cosine at the gallery's cosine threshold ...
    assert m.threshold == cosine_threshold
    assert m.score == pytest.approx(by_cosine.candidates[0].score, abs=1e-5)
    assert m.is_new == (m.score < cosine_threshold)
    # ... while the candidates are named and ordered by the fused probability
    fused = [row.evidence[c.image_id].probabilities["fused"] for c in m.candidates]
    assert [c.score for c in m.candidates] == pytest.approx(fused)
    assert fused == sorted(fused, reverse=True)


def test_auto_is_the_global_score_where_it_won_both_jobs(monkeypatch, fused_gallery):
    from reid.gallery import Gallery
    from reid.pipeline import MatchOptions, resolve_scorer

    _with_roles(monkeypatch, fused_gallery, "global", "global")
    with Gallery.open(fused_gallery) as g:
        opts, choice = resolve_scorer(g, MatchOptions())
    assert choice.name == "global" and opts.reranker is None and opts.threshold is None
    assert "global names the individual, global calls NEW" in choice.note


def test_global_scorer_is_unchanged(fused_gallery, tiny_run, tiny_data):
    from reid.features.embedder import Embedder
    from reid.gallery import Gallery

    photo = sorted((tiny_data.parent / "images" / "JGS002").glob("*.jpg"))[0]
    data = json.loads(_ok(["match", fused_gallery, photo, "--model", tiny_run, *CPU,
                           "--format", "json", "--scorer", "global"]))  # fmt: skip
    (row,) = data["matches"]
    embedder = Embedder.from_run(tiny_run, "cpu")
    vector = embedder.embed_paths([photo], progress=False).embeddings
    with Gallery.open(fused_gallery) as g:
        (expected,) = g.identify(vector, model_fingerprint=embedder.fingerprint)
        threshold = g.threshold
    assert data["scorer"] == "global" and row["threshold"] == threshold
    assert [(c["individual"], c["score"]) for c in row["candidates"]] == [
        (c.individual, round(c.score, 4)) for c in expected.candidates
    ]
    assert all("scores" not in c for c in row["candidates"])


def test_sift_alone_ranks_by_its_probability(fused_gallery, tiny_run, turned_photos):
    data = json.loads(_ok(["match", fused_gallery, turned_photos["JGS001"], "--model", tiny_run,
                           *CPU, "--format", "json", "--scorer", "sift"]))  # fmt: skip
    (row,) = data["matches"]
    assert row["decision"] == "JGS001" and data["calibration"]["scorer"] == "sift"
    assert all(c["score"] == c["scores"]["sift"] for c in row["candidates"])


def test_other_local_scorer_is_refused_in_one_sentence(fused_gallery, tiny_run, tiny_data):
    photo = sorted((tiny_data.parent / "images" / "JGS001").glob("*.jpg"))[0]
    code, out = _run(["match", fused_gallery, photo, "--model", tiny_run, *CPU,
                      "--scorer", "xfeat"])  # fmt: skip
    assert code == 1 and "holds sift local features" in out and "--scorer xfeat" in out
    assert out.strip().count(". ") == 0 and "Traceback" not in out
    code, out = _run(["enroll", fused_gallery, photo, "--individual", "JGS001", "--model",
                      tiny_run, *CPU, "--local", "xfeat"])  # fmt: skip
    assert code == 1 and "holds local features of extractor" in out


def test_sheet_shows_correspondences(fused_gallery, tiny_run, turned_photos, tmp_path):
    _ok(["match", fused_gallery, turned_photos["JGS003"], "--model", tiny_run, *CPU,
         "--sheet", tmp_path / "sheets", "--top-k", "2"])  # fmt: skip
    (png,) = (tmp_path / "sheets").glob("*.png")
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    lime = (pixels[..., 1] > 200) & (pixels[..., 0] < 80) & (pixels[..., 2] < 80)
    assert lime.sum() > 50  # correspondence lines were drawn


def test_too_few_pairs_keeps_the_cosine_calibration(tmp_path, tiny_run, tiny_data):
    images = tiny_data.parent / "images"
    photos = [sorted((images / ind).glob("*.jpg"))[:2] for ind in ("JGS001", "JGS002")]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,individual,sighting\n" + "".join(
        f"{p},{p.parent.name},{p.parent.name}-{n}\n" for pair in photos for n, p in enumerate(pair)
    ))  # fmt: skip
    gallery = tmp_path / "small"
    _ok(["enroll", gallery, manifest, "--model", tiny_run, *CPU])
    out = _ok(["calibrate", gallery, "--quiet"])
    assert "Fused calibration of gallery" in out and "needs at least 5" in out
    info = json.loads(_ok(["gallery", "info", gallery]))
    assert info["calibrated"] and info["fused_calibration"] is None
    out = _ok(["match", gallery, photos[0][0], "--model", tiny_run, *CPU])
    assert "note: scoring by the global embedding only" in out


def test_enroll_without_local_and_reembed_with_it(tmp_path, tiny_run, tiny_data, fused_gallery):
    gallery = tmp_path / "plain"
    out = _ok(["enroll", gallery, tiny_data, "--model", tiny_run, *CPU, "--local", "none"])
    assert "local features" not in out
    info = json.loads(_ok(["gallery", "info", gallery]))
    assert info["local_features"]["num_with_features"] == 0
    copy = tmp_path / "copy"
    shutil.copytree(fused_gallery, copy)
    out = _ok(["gallery", "reembed", copy, "--model", tiny_run, *CPU, "--local", "sift"])
    assert "local features of 32/32 photos re-extracted" in out
    info = json.loads(_ok(["gallery", "info", copy]))
    assert info["fused_calibration"] is None and info["local_scorer"]["name"] == "sift"


def test_fusion_calibration_round_trip():
    from reid.matching.fused import FusionCalibration

    rng = np.random.default_rng(0)
    same = rng.random(400) < 0.3
    raw = {"cosine": rng.normal(same * 0.4, 0.2), "sift": rng.poisson(np.where(same, 30, 3))}
    fusion = FusionCalibration.fit(raw, same)
    fused = fusion(raw)
    assert fused.shape == (400,) and 0.0 <= fused.min() <= fused.max() <= 1.0
    assert fused[same].mean() > 0.7 > 0.2 > fused[~same].mean()
    again = FusionCalibration.from_dict(json.loads(json.dumps(fusion.to_dict())))
    np.testing.assert_allclose(again(raw), fused)
