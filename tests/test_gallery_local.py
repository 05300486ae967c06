"""Local features stored in the gallery (gallery/local.py, the schema-2 migration in
gallery/store.py, `reid gallery info` and the reembed hook in cli/gallery_admin_cmds.py).

The gallery treats local features as opaque bytes, so random bytes stand in for
``LocalFeatures.to_bytes()`` here; no model and no torch are needed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from reid.gallery import Gallery, GalleryError, ImageRecord
from reid.gallery.faults import ENV_VAR
from reid.gallery.synthetic import fake_photos, random_unit_vectors, records_for

FP = "model-A"
DIM = 16
LOCAL = "sift-v1"
REPO = Path(__file__).resolve().parents[1]


def blobs_for(num: int, seed: int = 0) -> list[bytes]:
    """Distinct opaque blobs of varying length (what LocalFeatures.to_bytes() would give)."""
    rng = np.random.default_rng(seed)
    return [rng.bytes(100 + 10 * n) for n in range(num)]


def make_gallery(tmp_path: Path, num_individuals: int = 3, per: int = 2, *, local_features=None):
    """A gallery of ``num_individuals`` x ``per`` photos enrolled with local features
    (``local_features``, default :func:`blobs_for`); returns (gallery, report, blobs)."""
    num = num_individuals * per
    labels = np.repeat(np.arange(num_individuals), per)
    records = records_for(fake_photos(tmp_path / "photos", num), labels)
    vectors = random_unit_vectors(num, DIM)
    gallery = Gallery.create(tmp_path / "gal", model_fingerprint=FP, embedding_dim=DIM)
    blobs = blobs_for(num) if local_features is None else local_features
    report = gallery.enroll(
        records, vectors, model_fingerprint=FP, local_features=blobs, local_fingerprint=LOCAL
    )
    return gallery, report, blobs


def orphans(directory: Path) -> int:
    """Local-feature rows whose image row is gone."""
    conn = sqlite3.connect(directory / "gallery.sqlite")
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM local_features WHERE image_id NOT IN (SELECT id FROM images)"
        ).fetchone()[0]
    finally:
        conn.close()


def test_enroll_stores_blobs_and_reads_them_back(tmp_path):
    blobs = blobs_for(6)
    blobs[3] = None  # no local features for this photo
    gallery, report, _ = make_gallery(tmp_path, local_features=blobs)
    ids = report.added
    got = gallery.local_features([*ids, 9999])
    assert got == {i: b for i, b in zip(ids, blobs, strict=True) if b is not None}
    assert ids[3] not in got and 9999 not in got
    assert gallery.local_fingerprint == LOCAL
    details = gallery.audit_log()[-1]["details"]
    assert details["local_features"] == 5 and details["local_fingerprint"] == LOCAL
    # A duplicate photo is skipped and its blob dropped: the stored one stays.
    again = gallery.enroll(
        [ImageRecord(gallery.images()[0].source_path, "ind000")], random_unit_vectors(1, DIM),
        model_fingerprint=FP, local_features=[b"other"], local_fingerprint=LOCAL,
    )  # fmt: skip
    assert len(again.duplicates) == 1 and gallery.local_features([ids[0]]) == {ids[0]: blobs[0]}


def test_enroll_without_local_features_and_bytes_like_blobs(tmp_path):
    gallery = Gallery.create(tmp_path / "gal", model_fingerprint=FP, embedding_dim=DIM)
    photos = fake_photos(tmp_path / "p", 3)
    records = records_for(photos, np.zeros(3, np.int64))
    report = gallery.enroll(records[:1], random_unit_vectors(1, DIM), model_fingerprint=FP)
    assert gallery.local_features(report.added) == {} and gallery.local_fingerprint is None
    gallery.check_local("anything")  # no local features yet: any extractor is welcome
    more = gallery.enroll(
        records[1:], random_unit_vectors(2, DIM, seed=1), model_fingerprint=FP,
        local_features=[bytearray(b"ab"), memoryview(b"cd")], local_fingerprint=LOCAL,
    )  # fmt: skip
    assert list(gallery.local_features(more.added).values()) == [b"ab", b"cd"]


def test_other_extractor_is_refused_naming_both(tmp_path):
    gallery, _, _ = make_gallery(tmp_path)
    before = (len(gallery.images()), gallery.generation, sorted(os.listdir(tmp_path / "gal")))
    photo = fake_photos(tmp_path / "new", 1, seed=5)
    with pytest.raises(GalleryError) as caught:
        gallery.enroll(
            [ImageRecord(photo[0], "x")], random_unit_vectors(1, DIM, seed=5),
            model_fingerprint=FP, local_features=[b"xyz"], local_fingerprint="xfeat-v2",
        )  # fmt: skip
    message = str(caught.value)
    assert "'sift-v1'" in message and "'xfeat-v2'" in message
    assert "reid gallery reembed" in message and message.count(". ") == 0
    with pytest.raises(GalleryError, match="xfeat-v2"):
        gallery.check_local("xfeat-v2")
    gallery.check_local(LOCAL)
    after = (len(gallery.images()), gallery.generation, sorted(os.listdir(tmp_path / "gal")))
    assert after == before


@pytest.mark.parametrize(
    ("blobs", "fingerprint", "message"),
    [
        ([b"a"], None, "without their extractor's fingerprint"),
        ([b"a"], "  ", "without their extractor's fingerprint"),
        ([b"a", b"b"], LOCAL, "1 photo records but 2 local-feature blobs"),
        (["text"], LOCAL, "are a str, not bytes"),
        ([np.zeros(3)], LOCAL, "are a ndarray, not bytes"),
        ([b""], LOCAL, "empty bytes"),
    ],
)
def test_bad_local_inputs_write_nothing(tmp_path, blobs, fingerprint, message):
    gallery = Gallery.create(tmp_path / "gal", model_fingerprint=FP, embedding_dim=DIM)
    photo = fake_photos(tmp_path / "p", 1)
    with pytest.raises(GalleryError, match=message):
        gallery.enroll(
            [ImageRecord(photo[0], "a")], random_unit_vectors(1, DIM), model_fingerprint=FP,
            local_features=blobs, local_fingerprint=fingerprint,
        )  # fmt: skip
    assert gallery.images() == [] and gallery.generation == 0


def test_rename_merge_remove_keep_blobs_with_their_photos(tmp_path):
    gallery, report, blobs = make_gallery(tmp_path)
    by_id = dict(zip(report.added, blobs, strict=True))
    gallery.rename("ind000", "Taro")
    gallery.merge("ind001", "Taro")
    taro = [img.image_id for img in gallery.images("Taro")]
    assert len(taro) == 4 and gallery.local_features(taro) == {i: by_id[i] for i in taro}
    doomed = [img.image_id for img in gallery.images("ind002")]
    gallery.remove("ind002")
    assert gallery.local_features(doomed) == {} and orphans(tmp_path / "gal") == 0
    assert gallery.local_features(report.added) == {i: by_id[i] for i in taro}
    stats = gallery.local_stats()
    assert (stats.num_with_features, stats.num_images) == (4, 4)


def test_reembed_reextracts_local_features_or_keeps_them(tmp_path):
    gallery, report, blobs = make_gallery(tmp_path)
    ids = report.added

    def embed(paths, boxes):
        return random_unit_vectors(len(paths), 8, seed=len(paths))

    gallery.reembed(embed, model_fingerprint="model-B")  # no local_fn: blobs are kept
    assert gallery.local_features(ids) == dict(zip(ids, blobs, strict=True))
    seen = []

    def extract(paths, boxes):
        seen.extend(zip(paths, boxes, strict=True))
        return [p.name.encode() if n % 2 == 0 else None for n, p in enumerate(paths)]

    gallery.reembed(embed, model_fingerprint="model-C", batch_size=4, local_fn=extract,
                    local_fingerprint="xfeat-v2")  # fmt: skip
    assert [p for p, _ in seen] == [img.path for img in gallery.images()]
    assert [b for _, b in seen] == [None] * 6
    stored = gallery.local_features(ids)
    assert sorted(stored) == [ids[0], ids[2], ids[4]]  # even places in batches [0-3], [4-5]
    assert stored[ids[0]] == gallery.images()[0].path.name.encode()
    assert gallery.local_fingerprint == "xfeat-v2"
    details = gallery.audit_log()[-1]["details"]
    assert details["old_local_fingerprint"] == LOCAL
    assert details["new_local_fingerprint"] == "xfeat-v2"
    with pytest.raises(GalleryError, match="'xfeat-v2' but these come from extractor 'sift-v1'"):
        gallery.check_local(LOCAL)


def test_failed_reextraction_changes_nothing(tmp_path):
    gallery, report, blobs = make_gallery(tmp_path)
    generation = gallery.generation

    def embed(paths, boxes):
        return random_unit_vectors(len(paths), 8)

    with pytest.raises(GalleryError, match="returned 1 results for 6 photos"):
        gallery.reembed(embed, model_fingerprint="model-B", local_fn=lambda p, b: [b"x"],
                        local_fingerprint="xfeat-v2")  # fmt: skip
    with pytest.raises(GalleryError, match="without its extractor's fingerprint"):
        gallery.reembed(embed, model_fingerprint="model-B", local_fn=lambda p, b: [])
    assert gallery.generation == generation and gallery.model_fingerprint == FP
    assert gallery.local_fingerprint == LOCAL
    assert gallery.local_features(report.added) == dict(zip(report.added, blobs,
                                                                 strict=True))  # fmt: skip


def test_info_reports_local_feature_statistics(tmp_path):
    blobs = [b"x" * 100, None, b"y" * 300, b"z" * 200]
    gallery, _, _ = make_gallery(tmp_path, 2, 2, local_features=blobs)
    assert gallery.info()["local_features"] == {
        "fingerprint": LOCAL, "num_with_features": 3, "num_images": 4, "bytes_per_photo": 200.0,
    }  # fmt: skip
    from reid.cli.main import app

    result = CliRunner().invoke(app, ["gallery", "info", str(tmp_path / "gal")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["local_features"]["num_with_features"] == 3
    empty = Gallery.create(tmp_path / "empty", model_fingerprint=FP, embedding_dim=DIM)
    assert empty.info()["local_features"] == {
        "fingerprint": None, "num_with_features": 0, "num_images": 0, "bytes_per_photo": 0.0,
    }  # fmt: skip


def make_old_gallery(tmp_path: Path) -> Path:
    """A schema-1 gallery as the toolkit wrote it before local features existed."""
    directory = tmp_path / "old"
    gallery = Gallery.create(directory, model_fingerprint=FP, embedding_dim=DIM)
    photos = fake_photos(tmp_path / "p", 4)
    gallery.enroll(records_for(photos, np.array([0, 0, 1, 1])), random_unit_vectors(4, DIM),
                   model_fingerprint=FP)  # fmt: skip
    gallery.close()
    conn = sqlite3.connect(directory / "gallery.sqlite")
    conn.execute("DROP TABLE local_features")
    conn.execute("UPDATE settings SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    return directory


def test_old_gallery_gets_the_table_and_works(tmp_path):
    directory = make_old_gallery(tmp_path)
    gallery = Gallery.open(directory)
    info = gallery.info()
    assert info["schema_version"] == 2 and info["generation"] == 1  # no write was recorded
    assert info["local_features"]["num_with_features"] == 0 and info["num_images"] == 4
    ids = [img.image_id for img in gallery.images()]
    assert gallery.local_features(ids) == {} and len(gallery.audit_log()) == 1
    assert gallery.identify(random_unit_vectors(1, DIM), model_fingerprint=FP)[0].candidates
    photo = fake_photos(tmp_path / "new", 1, seed=8)
    report = gallery.enroll([ImageRecord(photo[0], "ind001")], random_unit_vectors(1, DIM, 8),
                            model_fingerprint=FP, local_features=[b"kp"],
                            local_fingerprint=LOCAL)  # fmt: skip
    assert gallery.local_features(ids + report.added) == {report.added[0]: b"kp"}
    gallery.reembed(lambda p, b: random_unit_vectors(len(p), DIM), model_fingerprint=FP,
                    local_fn=lambda p, b: [b"k"] * len(p), local_fingerprint=LOCAL)  # fmt: skip
    assert gallery.local_stats().num_with_features == 5
    assert Gallery.open(directory).info()["schema_version"] == 2  # opens again, no migration


def test_newer_schema_is_refused(tmp_path):
    directory = make_old_gallery(tmp_path)
    conn = sqlite3.connect(directory / "gallery.sqlite")
    conn.execute("UPDATE settings SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(GalleryError, match="schema version 3.*upgrade the toolkit"):
        Gallery.open(directory)


CHILD = f"""
import sys
from pathlib import Path
from reid.gallery import Gallery
from reid.gallery.synthetic import fake_photos, random_unit_vectors, records_for
directory, photos = sys.argv[1], Path(sys.argv[2])
paths = fake_photos(photos, 3, seed=1)
Gallery.open(directory).enroll(
    records_for(paths, [1, 1, 1], prefix="p"), random_unit_vectors(3, {DIM}, seed=1),
    model_fingerprint="{FP}", local_features=[b"a", b"b", b"c"], local_fingerprint="{LOCAL}")
"""


@pytest.mark.parametrize(("point", "expected"), [("before_commit", 2), ("after_commit", 5)])
def test_sigkill_mid_enroll_leaves_photos_and_blobs_together(tmp_path, point, expected):
    gallery, _, _ = make_gallery(tmp_path, 2, 1)
    gallery.close()
    marker = tmp_path / "reached"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           ENV_VAR: f"{point}:{marker}"}  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "gal"), str(tmp_path / "child")],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"child never reached {point}: {child.stderr.read()}")
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    reopened = Gallery.open(tmp_path / "gal")
    ids = [img.image_id for img in reopened.images()]
    assert len(ids) == expected and orphans(tmp_path / "gal") == 0
    assert sorted(reopened.local_features(ids)) == ids  # every photo has its blob, no more
    assert reopened.local_stats().num_with_features == expected


def test_gallery_with_local_features_imports_no_torch(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from reid.gallery import Gallery, ImageRecord\n"
        f"d = Path({str(tmp_path)!r})\n"
        "(d / 'a.jpg').write_bytes(b'photo')\n"
        "g = Gallery.create(d / 'g', model_fingerprint='m', embedding_dim=4)\n"
        "r = g.enroll([ImageRecord(d / 'a.jpg', 'A')], np.ones((1, 4), np.float32),\n"
        "             model_fingerprint='m', local_features=[b'kp'], local_fingerprint='l')\n"
        "assert g.local_features(r.added) == {r.added[0]: b'kp'}\n"
        "g.info()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'cv2')\n"
        "       or (m.startswith('reid.') and not m.startswith('reid.gallery'))]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_cli_reembed_hook_reextracts_with_a_local_scorer(tmp_path):
    from PIL import Image

    from reid.cli.gallery_admin_cmds import reembed_gallery

    photos = []
    for n, size in enumerate([(40, 20), (30, 60)]):
        photos.append(tmp_path / f"p{n}.png")
        Image.new("RGB", size, (n * 100, 50, 50)).save(photos[-1])
    gallery = Gallery.create(tmp_path / "gal", model_fingerprint=FP, embedding_dim=DIM)
    records = [ImageRecord(photos[0], "A"), ImageRecord(photos[1], "B", box=(0, 0, 30, 30))]
    gallery.enroll(records, random_unit_vectors(2, DIM), model_fingerprint=FP)
    shapes = []

    def extract(image):
        shapes.append(image.shape)
        return SimpleNamespace(to_bytes=lambda: f"{image.shape}".encode())

    scorer = SimpleNamespace(fingerprint="fake-v1", max_side=20, extract=extract)
    embedder = SimpleNamespace(
        fingerprint=FP,
        embed_paths=lambda paths, boxes, **kw: SimpleNamespace(
            failures=[], embeddings=random_unit_vectors(len(paths), DIM)
        ),
    )
    reembed_gallery(tmp_path / "gal", embedder, quiet=True, local_scorer=scorer)
    assert shapes == [(10, 20, 3), (20, 20, 3)]  # whole photo; the 30x30 box
    ids = [img.image_id for img in gallery.images()]
    assert gallery.local_features(ids) == {ids[0]: b"(10, 20, 3)", ids[1]: b"(20, 20, 3)"}
    assert gallery.local_fingerprint == "fake-v1"
