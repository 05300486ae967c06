"""Head detection in the pipeline: the no-head path, several heads, boxes kept in the gallery,
and a real (tiny) ultralytics detector trained, saved, loaded and run offline."""

from __future__ import annotations

import csv
import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reid.cli.main import app
from reid.detect.crop import crop_box
from reid.detect.detector import NO_HEAD, Detection
from reid.detect.heads import crop_samples, head_queries
from reid.errors import ImageLoadError
from reid.features.embedder import Embedder
from reid.gallery import Gallery
from reid.io.datasets import ImageRecord, read_dataset
from reid.io.images import load_image
from reid.pipeline import MatchOptions, enroll_samples, match_photos, open_gallery

runner = CliRunner()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


class StubDetector:
    """Answers from a table: photo name -> boxes (x1, y1, x2, y2, confidence)."""

    crop_margin = 0.1

    def __init__(self, table: dict[str, list[tuple[int, int, int, int, float]]]):
        self.table = table

    def detect_paths(self, paths, *, progress=True, **_):
        out = []
        for p in paths:
            try:
                w, h = Image.open(p).size
            except OSError:
                out.append(ImageLoadError(Path(p), "not an image file that can be read"))
                continue
            heads = [
                Detection((x1, y1, x2, y2), c, crop_box((x1, y1, x2, y2), w, h, self.crop_margin))
                for x1, y1, x2, y2, c in self.table.get(Path(p).name, [])
            ]
            out.append(sorted(heads, key=lambda d: -d.confidence))
        return out


def _photos(tmp_path: Path, n: int, size: int = 64) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        p = tmp_path / f"p{k}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_crop_samples_no_head_several_and_best(tmp_path):
    p0, p1, p2 = _photos(tmp_path, 3)
    stub = StubDetector({"p0.png": [(10, 10, 30, 30, 0.9)], "p2.png": [(0, 0, 20, 20, 0.5),
                         (30, 30, 60, 60, 0.8)]})  # fmt: skip
    samples = [ImageRecord(p, "A") for p in (p0, p1, p2)]
    search = crop_samples(stub, samples)
    assert [s.path for s in search.samples] == [p0]
    assert search.samples[0].box == crop_box((10, 10, 30, 30), 64, 64, 0.1) == (9, 9, 31, 31)
    assert search.no_head == [p1] and search.several == [(p2, 2)]
    lines = search.problems()
    assert f"{p1}: {NO_HEAD}" in lines and any(
        "2 heads found" in x and "--best" in x for x in lines
    )
    best = crop_samples(stub, samples, best=True)
    assert [s.path for s in best.samples] == [p0, p2]
    assert best.samples[1].box == crop_box((30, 30, 60, 60), 64, 64, 0.1)  # the most confident


def test_head_queries_make_one_query_per_head(tmp_path):
    p0, p1 = _photos(tmp_path, 2)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    stub = StubDetector({"p0.png": [(0, 0, 20, 20, 0.5), (30, 30, 60, 60, 0.8)]})
    queries = head_queries(stub, [p0, p1, bad])
    assert [(q.label, q.head, q.heads, q.error) for q in queries] == [
        ("p0.png#1", 1, 2, ""),
        ("p0.png#2", 2, 2, ""),
        ("p1.png", 0, 0, NO_HEAD),
        ("bad.jpg", 0, 0, "not an image file that can be read"),
    ]
    assert queries[0].confidence == 0.8 and queries[0].box == crop_box((30, 30, 60, 60), 64, 64)
    assert [q.label for q in head_queries(stub, [p0], best=True)] == ["p0.png"]


def test_enroll_and_match_with_detector_keep_boxes(tmp_path, tiny_run, tiny_data):
    samples = read_dataset(tiny_data)[:8]  # 64 px heads of JGS001
    names = [s.path.name for s in samples]
    table = {n: [(8, 8, 56, 56, 0.9)] for n in names[:6]}  # the last two: no head found
    stub = StubDetector(table)
    crop = crop_box((8, 8, 56, 56), 64, 64, 0.1)
    embedder = Embedder.from_run(tiny_run, "cpu")
    with open_gallery(tmp_path / "g", embedder, create=True) as g:
        outcome = enroll_samples(g, samples, embedder, progress=False, detector=stub)
        assert len(outcome.report.added) == 6
        assert sum(NO_HEAD in line for line in outcome.no_head) == 2
        assert NO_HEAD in outcome.summary() and str(samples[7].path) in outcome.summary()
        stored = g.images()
        assert len(stored) == 6 and {im.box for im in stored} == {crop}
        assert {im.source_path for im in stored} == {str(s.path) for s in samples[:6]}
        # a query with two heads and one with none
        query = samples[0].path
        two = StubDetector({query.name: [(8, 8, 56, 56, 0.9), (0, 0, 30, 30, 0.4)]})
        rows = match_photos(
            g, [query, samples[7].path], embedder, MatchOptions(progress=False, detector=two)
        )
        assert [(r.label, r.error) for r in rows] == [
            (f"{query.name}#1", ""),
            (f"{query.name}#2", ""),
            (samples[7].path.name, NO_HEAD),
        ]
        assert rows[0].box == crop and rows[0].match.decision == "JGS001"
        assert rows[0].match.score > 0.999  # the very crop that was enrolled
        assert rows[2].match is None
        # re-embedding uses the stored boxes: same model, same vectors
        seen = []

        def embed(paths, boxes):
            seen.extend(boxes)
            return embedder.embed_paths(paths, boxes, progress=False).embeddings

        vec = embedder.embed_paths([query], [crop], progress=False).embeddings
        before = g.identify(vec, model_fingerprint=embedder.fingerprint)[0]
        g.reembed(embed, model_fingerprint=embedder.fingerprint)
        assert seen == [crop] * 6
        after = g.identify(vec, model_fingerprint=embedder.fingerprint)[0]
        assert after.candidates[0].score == pytest.approx(before.candidates[0].score, abs=1e-5)


def test_manifest_box_column_crops_the_photo(tmp_path):
    from reid.io.images import prepare_image

    img = np.zeros((40, 60, 3), np.uint8)
    img[10:20, 30:50] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text('path,individual,box\na.png,A,"30,10,50,20"\na.png,B,\n')
    a, b = read_dataset(tmp_path / "m.csv")
    assert a.box == (30, 10, 50, 20) and b.box is None
    assert prepare_image(a.path, 8, box=a.box).min() == 255  # only the white patch
    (tmp_path / "bad.csv").write_text('path,individual,box\na.png,A,"30,10,20,20"\n')
    with pytest.raises(Exception, match=r"bad.csv line 2.*x1 < x2"):
        read_dataset(tmp_path / "bad.csv")


# ----------------------------------------------------------------- the real ultralytics model
def test_one_cv2_and_ultralytics_import_together():
    """A clean install must give one working OpenCV: ultralytics-opencv-headless and
    albumentations share opencv-python-headless; the GUI opencv-python must not come along."""
    installed = {d.metadata["Name"].lower() for d in md.distributions()}
    assert "opencv-python-headless" in installed
    assert "opencv-python" not in installed, "opencv-python would overwrite the headless cv2"
    code = (
        "import os; os.environ['YOLO_OFFLINE']='1'\n"
        "import cv2, albumentations, ultralytics, numpy as np\n"
        "ok, buf = cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))\n"
        "assert ok and cv2.imdecode(buf, cv2.IMREAD_COLOR).shape == (4, 4, 3)\n"
        "print(cv2.__version__, albumentations.__version__, ultralytics.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory) -> Path:
    """A detector trained for one epoch on 8 small synthetic scenes through the CLI: too little
    to find heads, enough to check the files, the loading and the offline path."""
    from reid.synthetic.scenes import SceneLayout, synthesize_scenes

    root = tmp_path_factory.mktemp("det")
    data = synthesize_scenes(root / "scenes", 4, 2, SceneLayout(160, 128, val_fraction=0.5),
                             seed=1, progress=False)  # fmt: skip
    out = root / "detector"
    result = runner.invoke(app, ["detect", "train", "--data", str(data), "--out", str(out),
                                 "--epochs", "1", "--imgsz", "64", "--batch", "4",
                                 "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, _plain(result.output)
    assert "validation mAP50" in _plain(result.output)
    return out


def test_detector_folder_and_offline_run(tiny_detector, tmp_path):
    from reid.detect.detector import load_detector

    meta = json.loads((tiny_detector / "detector.json").read_text())
    assert (tiny_detector / "detector.pt").is_file() and meta["imgsz"] == 64
    assert set(meta["metrics"]) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert meta["crop_margin"] == 0.1 and meta["epochs_run"] == 1
    # with a near-zero threshold the untrained head proposes boxes: clipped, cropped by the rule
    det = load_detector(tiny_detector, device="cpu", conf=1e-6)
    # ultralytics patches PIL.Image.open on import (to pip-install a HEIF plugin); a bad file
    # must still be reported as such, not crash
    junk = tmp_path / "notes.jpg"
    junk.write_text("not a photo")
    with pytest.raises(ImageLoadError, match="not an image file"):
        load_image(junk)
    [bad] = det.detect_paths([junk], progress=False)
    assert isinstance(bad, ImageLoadError)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8))
    [heads] = det.detect_images([img])
    assert heads, "expected some low-confidence boxes"
    assert [d.confidence for d in heads] == sorted((d.confidence for d in heads), reverse=True)
    for d in heads:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 120 and 0 <= y1 < y2 <= 90
        assert d.crop == crop_box(d.box, 120, 90, 0.1)


def test_no_head_found_is_reported_never_enrolled(tiny_detector, tiny_run, tiny_data, tmp_path):
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "detector.pt").write_bytes((tiny_detector / "detector.pt").read_bytes())
    meta = json.loads((tiny_detector / "detector.json").read_text())
    (strict / "detector.json").write_text(json.dumps({**meta, "conf": 0.999}))  # finds nothing
    photos = sorted((tiny_data.parent / "images" / "JGS001").glob("*.jpg"))[:3]
    gallery = tmp_path / "g"
    common = ["--model", str(tiny_run), "--detector", str(strict), "--device", "cpu", "--quiet"]
    out = runner.invoke(app, ["enroll", str(gallery), *map(str, photos), "--individual",
                              "JGS001", *common])  # fmt: skip
    assert out.exit_code == 0, _plain(out.output)
    text = _plain(out.output)
    assert text.count(NO_HEAD) == 3 and "0 individuals, 0 photos" in text
    with Gallery.open(gallery) as g:
        assert g.images() == []
    crops = tmp_path / "crops"
    out = runner.invoke(app, ["detect", "run", str(strict), *map(str, photos), "--crop-out",
                              str(crops), "--device", "cpu", "--quiet"])  # fmt: skip
    assert out.exit_code == 0 and "0 head crops from 0 of 3 photos" in _plain(out.output)
    with open(crops / "detections.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["photo"] for r in rows] == list(map(str, photos))
    assert {r["note"] for r in rows} == {NO_HEAD}


def test_bad_detector_paths_are_one_sentence(tmp_path, tiny_run, tiny_data):
    photo = next((tiny_data.parent / "images" / "JGS001").glob("*.jpg"))
    for bad, words in [
        (tmp_path / "missing", "does not exist"),
        (tmp_path, "has no detector.pt"),
    ]:
        out = runner.invoke(app, ["match", str(tmp_path / "g"), str(photo), "--model",
                                  str(tiny_run), "--detector", str(bad)])  # fmt: skip
        assert out.exit_code == 1 and words in _plain(out.output)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    out = runner.invoke(app, ["detect", "run", str(junk), str(photo), "--crop-out",
                              str(tmp_path / "c")])  # fmt: skip
    assert out.exit_code == 1 and "cannot be loaded" in _plain(out.output)
    out = runner.invoke(app, ["detect", "train", "--data", str(tmp_path / "none.yaml"),
                              "--out", str(tmp_path / "d")])  # fmt: skip
    assert out.exit_code == 1 and "does not exist" in _plain(out.output)


def test_a_model_remembers_its_detector_and_enroll_warns_of_another_cut(tiny_detector, tmp_path):
    from reid.detect.detector import detector_mismatch, load_detector, record_detector

    det = load_detector(tiny_detector, device="cpu")
    run = tmp_path / "run"
    run.mkdir()
    assert detector_mismatch(run, det) == ""  # a run that does not say: no warning
    record_detector(run, None)
    assert "whole photos" in detector_mismatch(run, det) and detector_mismatch(run, None) == ""
    record_detector(run, det)
    assert detector_mismatch(run, det) == ""
    assert "same --detector" in detector_mismatch(run, None)
    used = json.loads((run / "detector_used.json").read_text())
    (run / "detector_used.json").write_text(json.dumps({**used, "sha256": "0" * 16}))
    assert "another detector" in detector_mismatch(run / "model.pt", det)


def test_dataset_under_a_folder_named_images_finds_its_labels(tmp_path):
    """Labels live beside the last images/ of a path (ultralytics' rule), not the first."""
    from reid.detect.training import check_dataset
    from reid.synthetic.scenes import SceneLayout, synthesize_scenes

    data = synthesize_scenes(tmp_path / "images" / "survey", 2, 1,
                             SceneLayout(128, 128, val_fraction=0.5), progress=False)  # fmt: skip
    spec = check_dataset(data)
    assert spec["path"] == str((tmp_path / "images" / "survey").resolve())
    (data.parent / "labels" / "train").rename(data.parent / "labels" / "moved")
    with pytest.raises(Exception, match=r"no labels folder .*survey.labels.train"):
        check_dataset(data)
