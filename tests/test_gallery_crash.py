"""Crash safety and concurrency across processes (gallery/store.py, gallery/keeper.py).

Child processes enroll through the public API. A crash is made deterministic with the
``REID_GALLERY_CRASH_POINT`` hook: the child announces that it reached the point (a marker file)
and hangs there until the test kills it with SIGKILL.
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

import numpy as np
import pytest

from reid.gallery import Gallery, ImageRecord
from reid.gallery.faults import ENV_VAR
from reid.gallery.synthetic import fake_photos, random_unit_vectors, records_for

FP = "model-A"
DIM = 16
REPO = Path(__file__).resolve().parents[1]

CHILD = f"""
import sys
from pathlib import Path
from reid.gallery import Gallery
from reid.gallery.synthetic import fake_photos, random_unit_vectors, records_for
directory, photos, seed, num, batches = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:])
gallery = Gallery.open(directory)
paths = fake_photos(photos, num, seed=seed)
vectors = random_unit_vectors(num, {DIM}, seed=seed)
records = records_for(paths, [seed] * num, prefix="p")
step = num // batches
for begin in range(0, num, step):
    gallery.enroll(records[begin:begin + step], vectors[begin:begin + step],
                   model_fingerprint="{FP}")
"""


def start_child(directory, photos, seed, num, batches=1, crash=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop(ENV_VAR, None)
    if crash:
        env[ENV_VAR] = crash
    args = [sys.executable, "-c", CHILD, str(directory), str(photos), str(seed), str(num),
            str(batches)]  # fmt: skip
    return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"child exited early: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("child never reached the crash point")
        time.sleep(0.02)


def check_consistent(directory: Path) -> int:
    """Every image has its vector and stored file, and the index agrees; returns #images."""
    conn = sqlite3.connect(directory / "gallery.sqlite")
    rows = conn.execute(
        "SELECT i.id, i.stored_path, e.image_id, e.vector FROM images i "
        "LEFT JOIN embeddings e ON e.image_id = i.id ORDER BY i.id"
    ).fetchall()
    conn.close()
    assert all(r[2] is not None for r in rows), "image without vector"
    assert all((directory / r[1]).is_file() for r in rows), "image without stored file"
    gallery = Gallery.open(directory)
    info = gallery.info()
    assert info["index"]["ntotal"] == info["num_images"] == len(rows)
    if rows:
        vectors = np.stack([np.frombuffer(r[3], np.float32) for r in rows])
        matches = gallery.identify(vectors, model_fingerprint=FP, top_k=1)
        assert [m.candidates[0].image_id for m in matches] == [r[0] for r in rows]
    gallery.close()
    return len(rows)


@pytest.fixture()
def small_gallery(tmp_path):
    gallery = Gallery.create(tmp_path / "gal", model_fingerprint=FP, embedding_dim=DIM)
    photos = fake_photos(tmp_path / "first", 2, seed=99)
    vectors = random_unit_vectors(2, DIM, seed=99)
    gallery.enroll(records_for(photos, [0, 1]), vectors, model_fingerprint=FP)
    gallery.close()
    return tmp_path / "gal"


@pytest.mark.parametrize(
    ("point", "expected"), [("before_commit", 2), ("after_commit", 5), ("index_partial", 5)]
)
def test_sigkill_mid_enroll_leaves_before_or_after_state(small_gallery, tmp_path, point, expected):
    marker = tmp_path / "reached"
    child = start_child(small_gallery, tmp_path / "child", 1, 3, crash=f"{point}:{marker}")
    wait_for(marker, child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    stored = {p.name for p in (small_gallery / "images").iterdir()}
    # Before the commit the three copies were already renamed into place: harmless orphans.
    assert len(stored) == (5 if point == "before_commit" else expected)
    meta = json.loads((small_gallery / "index_meta.json").read_text())
    assert meta["generation"] == 1  # the saved index still reflects the first enroll
    assert check_consistent(small_gallery) == expected
    # The next write cleans what the killed one left behind (orphan photo copies, temp files).
    gallery = Gallery.open(small_gallery)
    late = fake_photos(tmp_path / "late", 1, seed=7)
    gallery.enroll(
        [ImageRecord(late[0], "late")], random_unit_vectors(1, DIM, 7), model_fingerprint=FP
    )
    referenced = {img.path.name for img in gallery.images()}
    assert {p.name for p in (small_gallery / "images").iterdir()} == referenced
    assert (
        not list(small_gallery.glob(".tmp-*"))
        and not (small_gallery / ".write-in-progress").exists()
    )
    assert check_consistent(small_gallery) == expected + 1


def test_concurrent_enroll_processes_keep_every_record(small_gallery, tmp_path):
    children = [start_child(small_gallery, tmp_path / f"c{s}", s, 12, batches=4) for s in (1, 2)]
    for child in children:
        assert child.wait(timeout=120) == 0, child.stderr.read()
    assert check_consistent(small_gallery) == 2 + 24
    gallery = Gallery.open(small_gallery)
    assert {s.individual: s.num_images for s in gallery.individuals()} == {
        "ind000": 1, "ind001": 1, "p001": 12, "p002": 12
    }  # fmt: skip
    log = gallery.audit_log()
    assert [e["action"] for e in log].count("enroll") == 1 + 8
    assert gallery.generation == 1 + 8
