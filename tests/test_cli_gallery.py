"""`reid enroll / match / calibrate / gallery ...` through Typer's CliRunner."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reid.cli.main import app

runner = CliRunner()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, _plain(result.output)
    return _plain(result.output)


@pytest.fixture()
def enrolled(tmp_path, tiny_run, tiny_data) -> Path:
    gallery = tmp_path / "gallery"
    out = _ok(["enroll", gallery, tiny_data, "--model", tiny_run, "--quiet", "--device", "cpu"])
    assert "enrolled 32 photo(s)" in out and "4 individuals, 32 photos" in out
    assert "uncalibrated" in out
    return gallery


def test_enroll_match_calibrate_round(enrolled, tiny_run, tiny_data, tmp_path):
    photos = sorted((tiny_data.parent / "images" / "JGS002").glob("*.jpg"))[:2]
    out = _ok(["match", enrolled, *photos, "--model", tiny_run, "--quiet", "--device", "cpu"])
    assert "UNCALIBRATED" in out  # every output of an uncalibrated gallery says so
    # the enrolled photos themselves are found again (their own copy is in the gallery)
    assert out.count("JGS002:1.000") == 2
    out = _ok(["calibrate", enrolled, "--target-fmr", "0.1"])
    assert re.search(r"threshold -?\d\.\d{3}: target false-match rate 10\.0%", out)
    assert "OPTIMISTIC: calibrated without --model" in out
    out = _ok(["calibrate", enrolled, "--target-fmr", "0.1", "--model", tiny_run])
    # the tiny model trained on all four gallery individuals: no honest newcomer is left
    assert "OPTIMISTIC: individuals the model was trained on played the never-seen role" in out
    data = json.loads(
        _ok(
            [
                "match",
                enrolled,
                photos[0],
                "--model",
                tiny_run,
                "--quiet",
                "--format",
                "json",
                "--device",
                "cpu",
            ]
        )
    )
    assert data["calibrated"] and data["calibration"]["target_fmr"] == 0.1
    (row,) = data["matches"]
    assert row["decision"] == "JGS002" and row["threshold"] == data["calibration"]["threshold"]
    assert len(row["candidates"]) == 4  # top-5 of a 4-individual gallery
    rows = list(
        csv.DictReader(
            _ok(
                [
                    "match",
                    enrolled,
                    photos[0],
                    "--model",
                    tiny_run,
                    "--quiet",
                    "--format",
                    "csv",
                    "--device",
                    "cpu",
                ]
            ).splitlines()
        )
    )
    assert rows[0]["decision"] == "JGS002" and rows[0]["calibrated"] == "True"


def test_match_reports_a_bad_photo_and_goes_on(enrolled, tiny_run, tiny_data, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    good = sorted((tiny_data.parent / "images" / "JGS001").glob("*.jpg"))[0]
    out = _ok(
        [
            "match",
            enrolled,
            bad,
            good,
            "--model",
            tiny_run,
            "--quiet",
            "--device",
            "cpu",
            "--sheet",
            tmp_path / "sheets",
        ]
    )
    assert "ERROR" in out and "file is empty" in out and "JGS001:1.000" in out
    assert len(list((tmp_path / "sheets").glob("*.png"))) == 1


def test_duplicate_enroll_is_reported_and_skipped(enrolled, tiny_run, tiny_data):
    out = _ok(["enroll", enrolled, tiny_data, "--model", tiny_run, "--quiet", "--device", "cpu"])
    assert "enrolled 0 photo(s)" in out and out.count("already in the gallery") == 32


def test_enroll_new_enrolls_a_newcomer_once(enrolled, tiny_run, tmp_path):
    from reid.synthetic.salamanders import synthesize

    manifest = synthesize(tmp_path / "new", 1, 2, seed=3, size=64, first_index=9, progress=False)
    _ok(["calibrate", enrolled, "--target-fmr", "0.05"])
    photos = sorted((manifest.parent / "images").rglob("*.jpg"))
    out = _ok(
        [
            "match",
            enrolled,
            *photos,
            "--model",
            tiny_run,
            "--quiet",
            "--device",
            "cpu",
            "--enroll-new",
            "--format",
            "json",
        ]
    )
    rows = json.loads(out)["matches"]
    new_ids = {r["enrolled_as"] for r in rows if r["enrolled_as"]}
    info = json.loads(_ok(["gallery", "info", enrolled]))
    assert info["num_images"] == 32 + len([r for r in rows if r["enrolled_as"]])
    assert info["num_individuals"] == 4 + len(new_ids)
    for r in rows:  # each photo is either a known decision or enrolled as a new id
        assert r["decision"] != "ERROR"


def test_enroll_new_refuses_an_uncalibrated_gallery(enrolled, tiny_run, tiny_data):
    photo = sorted((tiny_data.parent / "images" / "JGS001").glob("*.jpg"))[0]
    result = runner.invoke(
        app,
        ["match", str(enrolled), str(photo), "--model", str(tiny_run), "--enroll-new", "--quiet"],
    )
    assert result.exit_code == 1 and "needs a calibrated threshold" in _plain(result.output)


def test_curation_commands(enrolled, tmp_path):
    assert "JGS003" in _ok(["gallery", "list", enrolled])
    assert len(_ok(["gallery", "show", enrolled, "JGS003"]).strip().splitlines()) == 8
    _ok(["gallery", "rename", enrolled, "JGS003", "Taro"])
    _ok(["gallery", "merge", enrolled, "JGS004", "Taro"])
    listing = _ok(["gallery", "list", enrolled])
    assert "Taro" in listing and "JGS004" not in listing and "JGS003" not in listing
    _ok(["gallery", "remove", enrolled, "Taro", "--yes"])
    info = json.loads(_ok(["gallery", "info", enrolled]))
    assert info["num_individuals"] == 2 and info["num_images"] == 16
    _ok(["gallery", "export", enrolled, tmp_path / "sightings.csv"])
    rows = list(csv.DictReader(open(tmp_path / "sightings.csv")))
    assert len(rows) == 16 and {r["individual"] for r in rows} == {"JGS001", "JGS002"}
    bad = runner.invoke(app, ["gallery", "rename", str(enrolled), "JGS001", "a/b"])
    assert bad.exit_code == 1 and "not allowed" in _plain(bad.output)


def test_other_model_is_refused_until_reembed(enrolled, tiny_run, tiny_data, tmp_path):
    import torch

    other = tmp_path / "other_run"
    shutil.copytree(tiny_run, other)
    ckpt = torch.load(other / "model.pt", weights_only=False)
    ckpt["model_state"]["classifier.bias"] += 1.0  # other weights -> other fingerprint
    from reid.features.checkpoint import fingerprint, load_checkpoint

    torch.save(ckpt, other / "model.pt")
    loaded = load_checkpoint(other)
    ckpt["fingerprint"] = fingerprint(loaded.model)
    torch.save(ckpt, other / "model.pt")
    photo = sorted((tiny_data.parent / "images" / "JGS001").glob("*.jpg"))[0]
    result = runner.invoke(
        app,
        ["match", str(enrolled), str(photo), "--model", str(other), "--quiet", "--device", "cpu"],
    )
    assert result.exit_code == 1 and "reid gallery reembed" in _plain(result.output)
    out = _ok(["gallery", "reembed", enrolled, "--model", other, "--quiet", "--device", "cpu"])
    assert "re-embedded 32 photos" in out
    _ok(["match", enrolled, photo, "--model", other, "--quiet", "--device", "cpu"])


def test_missing_gallery_is_one_sentence(tmp_path, tiny_run):
    result = runner.invoke(app, ["gallery", "info", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_calibrate_with_model_uses_never_trained_individuals(enrolled, tiny_run, tmp_path):
    from reid.synthetic.salamanders import synthesize

    others = synthesize(
        tmp_path / "others", 2, 4, seed=5, size=64, num_dates=2, first_index=11, progress=False
    )
    _ok(["enroll", enrolled, others, "--model", tiny_run, "--quiet", "--device", "cpu"])
    out = _ok(["calibrate", enrolled, "--model", tiny_run])
    assert "played by 2 individuals the model never trained on" in out and "OPTIMISTIC" not in out
    info = json.loads(_ok(["gallery", "info", enrolled]))
    assert info["calibration"]["unknown_pool"] == "never-trained"
    assert info["calibration"]["num_unknown_trials"] == 8


def test_same_bad_photo_twice_and_a_bad_id(enrolled, tiny_run, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    out = _ok(["match", enrolled, bad, bad, "--model", tiny_run, "--quiet", "--device", "cpu"])
    assert out.count("file is empty") == 2
    photo = tmp_path / "p" / "x.jpg"
    photo.parent.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32), (90, 60, 30)).save(photo)
    out = _ok(
        [
            "enroll",
            enrolled,
            photo,
            "--individual",
            "new",
            "--model",
            tiny_run,
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert "enrolled 0 photo(s)" in out and "is not allowed" in out


def test_manifest_observer_is_kept_and_the_option_fills_only_blanks(tmp_path, tiny_run, tiny_data):
    photos = sorted((tiny_data.parent / "images" / "JGS001").glob("*.jpg"))[:2]
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,individual,observer\n{photos[0]},JGS001,Sato\n{photos[1]},JGS001,\n")
    gallery = tmp_path / "g"
    _ok(["enroll", gallery, manifest, "--model", tiny_run, "--quiet", "--device", "cpu",
         "--observer", "Ito"])  # fmt: skip
    _ok(["gallery", "export", gallery, tmp_path / "s.csv"])
    with open(tmp_path / "s.csv", newline="") as f:
        observers = {Path(r["image"]).name: r["observer"] for r in csv.DictReader(f)}
    assert observers == {photos[0].name: "Sato", photos[1].name: "Ito"}
