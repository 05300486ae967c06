"""The Gallery API end to end on tiny fake photos and synthetic embeddings (gallery/core.py)."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from reid.gallery import NEW, Gallery, GalleryError, ImageRecord
from reid.gallery.synthetic import (
    clustered_embeddings,
    fake_photos,
    random_unit_vectors,
    records_for,
)

FP = "model-A"
DIM = 32


def make_gallery(tmp_path, num_individuals=5, per_individual=4, *, noise=0.3, sightings=2,
                 **create):  # fmt: skip
    """A gallery of clustered vectors; returns (gallery, vectors, labels, records)."""
    vectors, labels = clustered_embeddings(num_individuals, per_individual, DIM, noise=noise)
    photos = fake_photos(tmp_path / "photos", len(vectors))
    records = records_for(photos, labels, sightings=sightings)
    gallery = Gallery.create(tmp_path / "gal", model_fingerprint=FP, embedding_dim=DIM, **create)
    gallery.enroll(records, vectors, model_fingerprint=FP, user="tester")
    return gallery, vectors, labels, records


def test_enroll_copies_photos_and_identify_finds_a_near_duplicate(tmp_path):
    gallery, vectors, labels, records = make_gallery(tmp_path)
    stored = gallery.images()
    assert len(stored) == 20 and all(img.path.is_file() for img in stored)
    assert stored[0].path.read_bytes() == records[0].path.read_bytes()
    assert stored[0].path.parent == tmp_path / "gal" / "images"
    query = vectors[7] + 0.01 * random_unit_vectors(1, DIM, seed=9)[0]
    match = gallery.identify(query, model_fingerprint=FP, top_k=3)[0]
    assert match.decision == records[7].individual and not match.is_new
    assert match.candidates[0].image_id == stored[7].image_id
    assert match.calibrated is False and match.threshold is None
    assert len(match.candidates) == 3
    assert len({c.individual for c in match.candidates}) == 3  # individuals, not photos
    assert gallery.image(stored[7].image_id) == stored[7]  # one photo by id, as candidates give
    assert gallery.image(10_000) is None and gallery.image(2**70) is None


def test_identify_ranking_equals_brute_force_per_individual_max(tmp_path):
    gallery, vectors, labels, records = make_gallery(tmp_path, 8, 5, noise=1.0)
    queries = random_unit_vectors(30, DIM, seed=11)
    matches = gallery.identify(queries, model_fingerprint=FP, top_k=4)
    sims = queries @ vectors.T
    per_individual = np.stack([sims[:, labels == j].max(1) for j in range(8)], axis=1)
    for match, row in zip(matches, per_individual, strict=True):
        want = np.argsort(-row)[:4]
        assert [c.individual for c in match.candidates] == [f"ind{j:03d}" for j in want]
        np.testing.assert_allclose([c.score for c in match.candidates], row[want], atol=1e-5)


def test_topk_mean_scoring_equals_brute_force(tmp_path):
    gallery, vectors, labels, _ = make_gallery(tmp_path, 6, 4, noise=1.0, score_mode="topk_mean",
                                               score_k=2)  # fmt: skip
    queries = random_unit_vectors(10, DIM, seed=12)
    sims = queries @ vectors.T
    want = np.stack(
        [np.sort(sims[:, labels == j], axis=1)[:, -2:].mean(1) for j in range(6)], axis=1
    )
    for match, row in zip(gallery.identify(queries, model_fingerprint=FP, top_k=6), want,
                          strict=True):  # fmt: skip
        np.testing.assert_allclose([c.score for c in match.candidates], np.sort(row)[::-1],
                                   atol=1e-5)  # fmt: skip


def test_exclude_image_ids_hides_the_query_photo(tmp_path):
    gallery, vectors, _, _ = make_gallery(tmp_path)
    own = gallery.images()[0].image_id
    match = gallery.identify(vectors[0], model_fingerprint=FP, exclude_image_ids=[own])[0]
    assert own not in [c.image_id for c in match.candidates]
    assert match.decision == "ind000"  # still found through its other photos


def test_empty_gallery_answers_new(tmp_path):
    gallery = Gallery.create(tmp_path / "g", model_fingerprint=FP, embedding_dim=DIM)
    [match] = gallery.identify(random_unit_vectors(1, DIM), model_fingerprint=FP)
    assert match.decision == NEW and match.is_new and match.candidates == []


def test_calibration_hits_target_fmr_and_far_query_is_new(tmp_path):
    gallery, vectors, _, _ = make_gallery(tmp_path, 40, 6, noise=0.8, sightings=3)
    assert gallery.info()["calibration"] == "uncalibrated"
    cal = gallery.calibrate(target_fmr=0.05, user="tester")
    assert cal.fmr <= 0.05 and cal.fmr >= 0.05 - 2 / cal.num_unknown_trials
    assert cal.num_unknown_trials == 240 and cal.num_individuals == 40
    assert 0.8 < cal.tpr <= cal.rank1 <= 1.0
    # Never-seen animals from the same distribution: the fraction wrongly accepted is the FMR.
    strangers, _ = clustered_embeddings(300, 1, DIM, noise=0.8, seed=100)
    matches = gallery.identify(strangers, model_fingerprint=FP, top_k=1)
    assert abs(np.mean([not m.is_new for m in matches]) - 0.05) <= 0.03
    far = -vectors.mean(axis=0)
    [match] = gallery.identify(far, model_fingerprint=FP)
    assert match.decision == NEW and match.calibrated and match.threshold == cal.threshold
    [match] = gallery.identify(vectors[6] * 1.001, model_fingerprint=FP)
    assert match.decision == "ind001"
    info = gallery.info()
    assert info["calibrated"] and info["threshold"] == cal.threshold
    assert gallery.audit_log()[-1]["action"] == "calibrate"


def test_calibration_needs_two_individuals_and_two_sightings(tmp_path):
    gallery, _, _, _ = make_gallery(tmp_path, 1, 3)
    with pytest.raises(GalleryError, match="at least 2 individuals"):
        gallery.calibrate()
    gallery2, _, _, _ = make_gallery(tmp_path / "b", 3, 2, sightings=1)
    with pytest.raises(GalleryError, match="2 different sightings"):
        gallery2.calibrate()


def test_fingerprint_and_dimension_mismatch_name_the_fix(tmp_path):
    gallery, vectors, _, records = make_gallery(tmp_path, 2, 2)
    with pytest.raises(GalleryError, match="reid gallery reembed .* --model RUN_DIR"):
        gallery.identify(vectors[0], model_fingerprint="model-B")
    with pytest.raises(GalleryError, match="'model-A' but these come from model 'model-B'"):
        gallery.enroll(records[:1], vectors[:1], model_fingerprint="model-B")
    with pytest.raises(GalleryError, match="32-d embeddings but these are 16-d"):
        gallery.identify(np.ones(16, np.float32), model_fingerprint=FP)
    with pytest.raises(GalleryError, match="model 'model-B'"):
        Gallery.open_or_create(tmp_path / "gal", model_fingerprint="model-B", embedding_dim=DIM)


def test_duplicate_photo_is_reported_and_skipped(tmp_path):
    gallery, vectors, _, records = make_gallery(tmp_path, 2, 2)
    generation = gallery.generation
    copy = tmp_path / "renamed_copy.jpg"
    copy.write_bytes(records[1].path.read_bytes())
    again = [ImageRecord(copy, "ind001")]
    report = gallery.enroll(again, vectors[1:2], model_fingerprint=FP)
    assert report.added == [] and len(report.duplicates) == 1
    dup = report.duplicates[0]
    assert dup.path == copy and dup.existing_individual == "ind000" and dup.conflicting
    assert "already in the gallery as ind000" in report.summary()
    assert len(gallery.images()) == 4 and gallery.generation == generation + 1


def test_unreadable_photo_is_reported_and_the_batch_goes_on(tmp_path):
    gallery, _, _, _ = make_gallery(tmp_path, 1, 1)
    good = fake_photos(tmp_path / "more", 1, seed=5)[0]
    records = [ImageRecord(tmp_path / "missing.jpg", "A"), ImageRecord(good, "B")]
    report = gallery.enroll(records, random_unit_vectors(2, DIM), model_fingerprint=FP)
    assert len(report.added) == 1 and report.failed[0].path.name == "missing.jpg"
    assert [i.individual for i in gallery.individuals()] == ["B", "ind000"]


def test_invalid_id_rejects_the_whole_batch_before_writing(tmp_path):
    gallery, _, _, _ = make_gallery(tmp_path, 1, 1)
    photos = fake_photos(tmp_path / "more", 2, seed=6)
    records = [ImageRecord(photos[0], "ok"), ImageRecord(photos[1], "new")]
    with pytest.raises(GalleryError, match="'new' is not allowed"):
        gallery.enroll(records, random_unit_vectors(2, DIM), model_fingerprint=FP)
    with pytest.raises(GalleryError, match="must not contain '/'"):
        gallery.rename("ind000", "a/b")
    assert len(gallery.images()) == 1


def test_rename_merge_remove_update_data_and_audit(tmp_path):
    gallery, vectors, _, _ = make_gallery(tmp_path, 3, 2)
    gallery.rename("ind000", "Taro", user="alice")
    with pytest.raises(GalleryError, match="already exists"):
        gallery.rename("ind001", "Taro")
    with pytest.raises(GalleryError, match="'nobody' is not in gallery"):
        gallery.rename("nobody", "x")
    gallery.merge("ind001", "Taro", user="bob")
    assert {s.individual: s.num_images for s in gallery.individuals()} == {"Taro": 4, "ind002": 2}
    assert gallery.identify(vectors[2], model_fingerprint=FP)[0].decision == "Taro"
    doomed = [img.path for img in gallery.images("ind002")]
    gallery.remove("ind002", user="carol")
    assert not any(p.exists() for p in doomed)
    assert [s.individual for s in gallery.individuals()] == ["Taro"]
    match = gallery.identify(vectors[4], model_fingerprint=FP)[0]
    assert match.decision == "Taro"  # the only one left
    log = gallery.audit_log()
    assert [(e["action"], e["user"]) for e in log[-3:]] == [
        ("rename", "alice"), ("merge", "bob"), ("remove", "carol")
    ]  # fmt: skip
    assert log[-3]["details"] == {"old": "ind000", "new": "Taro", "num_images": 2}
    assert log[-1]["details"]["num_images"] == 2
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        gallery._store.conn.execute("DELETE FROM audit")


def test_reembed_replaces_vectors_fingerprint_and_clears_calibration(tmp_path):
    gallery, _, _, _ = make_gallery(tmp_path, 4, 4)
    gallery.calibrate()
    new_vectors = random_unit_vectors(16, 8, seed=21)
    seen, seen_boxes = [], []

    def embed(paths, boxes):
        seen.extend(paths)
        seen_boxes.extend(boxes)
        return new_vectors[len(seen) - len(paths) : len(seen)]

    assert gallery.reembed(embed, model_fingerprint="model-B", batch_size=5) == 16
    assert all(p.is_file() and p.parent.name == "images" for p in seen)
    assert seen_boxes == [None] * 16  # enrolled without crop boxes
    info = gallery.info()
    assert info["model_fingerprint"] == "model-B" and info["embedding_dim"] == 8
    assert info["calibration"] == "uncalibrated" and info["threshold"] is None
    [match] = gallery.identify(new_vectors[5], model_fingerprint="model-B")
    assert match.candidates[0].image_id == gallery.images()[5].image_id
    assert gallery.audit_log()[-1]["details"]["new_fingerprint"] == "model-B"
    with pytest.raises(GalleryError, match="reembed"):
        gallery.identify(np.ones(DIM, np.float32), model_fingerprint=FP)


def test_export_writes_sightings_csv(tmp_path):
    gallery = Gallery.create(tmp_path / "g", model_fingerprint=FP, embedding_dim=DIM)
    photos = fake_photos(tmp_path / "p", 2)
    records = [
        ImageRecord(photos[0], "B", date="2024-06-01", location="Hino river", sighting="s1"),
        ImageRecord(photos[1], "A", date="2024-05-30", observer="Sato", side="left"),
    ]
    gallery.enroll(records, random_unit_vectors(2, DIM), model_fingerprint=FP)
    path = gallery.export(tmp_path / "sightings.csv")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0])[:9] == ["individual", "image", "date", "time", "location", "observer",
                                 "condition", "side", "sighting"]  # fmt: skip
    assert [r["individual"] for r in rows] == ["A", "B"]
    assert rows[0]["observer"] == "Sato" and rows[1]["location"] == "Hino river"
    assert rows[0]["image"] == str(photos[1])


def test_index_is_rebuilt_when_deleted_or_stale(tmp_path):
    gallery, vectors, _, _ = make_gallery(tmp_path, 3, 3)
    directory = tmp_path / "gal"
    (directory / "index.faiss").unlink()
    reopened = Gallery.open(directory)
    assert reopened.identify(vectors[4], model_fingerprint=FP)[0].decision == "ind001"
    assert reopened._keeper.rebuilds == 1 and (directory / "index.faiss").exists()
    # Stale: an index saved for an older generation than the database.
    before = (directory / "index_meta.json").read_text()
    photos = fake_photos(tmp_path / "more", 1, seed=3)
    far = -vectors.mean(0)
    gallery.enroll([ImageRecord(photos[0], "Late")], far[None], model_fingerprint=FP)
    (directory / "index_meta.json").write_text(before)
    third = Gallery.open(directory)
    assert third.identify(far, model_fingerprint=FP)[0].decision == "Late"
    assert third._keeper.rebuilds == 1
    # A long-lived handle sees another handle's writes.
    assert reopened.identify(far, model_fingerprint=FP)[0].decision == "Late"


def test_ivf_gallery_falls_back_then_trains_when_it_grows(tmp_path):
    gallery, _, _, _ = make_gallery(tmp_path, 4, 2, index_factory="IVF4,Flat")
    assert "exact flat search" in gallery.info()["index"]["note"]
    more, labels = clustered_embeddings(40, 4, DIM, seed=4)
    photos = fake_photos(tmp_path / "more", len(more), seed=4)
    gallery.enroll(records_for(photos, labels, prefix="m"), more, model_fingerprint=FP)
    index = gallery.info()["index"]
    assert index["type"] == "IndexIVFFlat" and index["note"] == ""
    assert gallery.identify(more[17], model_fingerprint=FP)[0].decision == "m004"


def test_open_non_gallery_and_create_twice(tmp_path):
    with pytest.raises(GalleryError, match="is not a gallery .* create it"):
        Gallery.open(tmp_path)
    Gallery.create(tmp_path / "g", model_fingerprint=FP, embedding_dim=DIM)
    with pytest.raises(GalleryError, match="already a gallery"):
        Gallery.create(tmp_path / "g", model_fingerprint=FP, embedding_dim=DIM)
    assert not (tmp_path / "nowhere" / "gallery.sqlite").exists()
    opened = Gallery.open_or_create(tmp_path / "g", model_fingerprint=FP, embedding_dim=DIM)
    assert opened.info()["num_images"] == 0


def test_gallery_imports_no_torch_reid_or_cli(tmp_path):
    # reid.gallery is reached through the reid namespace, so the reid package itself is loaded:
    # what matters is that nothing heavy or outside the gallery comes with it.
    code = (
        "import sys, numpy as np\n"
        "from reid.gallery import Gallery\n"
        f"g = Gallery.create({str(tmp_path / 'g')!r}, model_fingerprint='m', embedding_dim=4)\n"
        "g.identify(np.ones(4, np.float32), model_fingerprint='m')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'cv2', 'gallery',"
        " 'cli') or (m.startswith('reid.') and not m.startswith('reid.gallery'))]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
