"""Write-side SQL: the body of each write, run inside :meth:`reid.gallery.store.Store.write`.

Each function only changes rows (and places photo copies) inside the caller's transaction and
fills ``txn.details`` for the audit row; the commit, lock and index update belong to the caller.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reid.gallery.catalog import require_individual
from reid.gallery.errors import GalleryError
from reid.gallery.openset import l2_normalize
from reid.gallery.records import Duplicate, EnrollFailure, ImageRecord, validate_individual_id
from reid.gallery.search import as_matrix
from reid.gallery.store import Store, WriteTxn, get_setting, set_setting, utc_now


@dataclass
class Inserted:
    """What :func:`insert_images` did: new ids with their vectors, duplicates and failures.

    ``positions[j]`` is the index in ``records`` of the photo that got ``image_ids[j]``.
    """

    image_ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    failed: list[EnrollFailure] = field(default_factory=list)
    new_individuals: list[str] = field(default_factory=list)


def enroll_inputs(
    records: Sequence[ImageRecord], embeddings: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Enroll's embeddings as an (N, D) float32 matrix and the validated individual id of each
    record; GalleryError when the counts differ or an id is not allowed (nothing is written)."""
    matrix = as_matrix(embeddings, "enroll")
    if len(records) != len(matrix):
        raise GalleryError(
            f"enroll got {len(records)} photo records but {len(matrix)} embedding rows; "
            f"pass one embedding row per photo."
        )
    return matrix, [validate_individual_id(r.individual) for r in records]


def insert_images(
    store: Store,
    txn: WriteTxn,
    records: Sequence[ImageRecord],
    names: Sequence[str],
    vectors: np.ndarray,
    usable: np.ndarray,
    fingerprint: str,
) -> Inserted:
    """Copy each photo in, skip duplicates by sha256, insert image + embedding rows.

    Args:
        names: validated individual id per record.
        vectors: (N, D) float32, L2-normalised; ``usable`` (N,) bool False for bad rows.
    """
    done = Inserted()
    added_to: set[str] = set()
    for n, (record, name, vector, ok) in enumerate(
        zip(records, names, vectors, usable, strict=True)
    ):
        if not ok:
            done.failed.append(EnrollFailure(Path(record.path), "its embedding is zero or NaN"))
        elif _insert_one(store, txn, record, name, vector, fingerprint, done):
            added_to.add(name)
            done.positions.append(n)
    txn.details.update(
        added=done.image_ids,
        individuals=sorted(added_to),
        new_individuals=done.new_individuals,
        duplicates=[
            {"path": str(d.path), "individual": d.existing_individual} for d in done.duplicates
        ],
        failed=[{"path": str(f.path), "reason": f.reason} for f in done.failed],
        model_fingerprint=fingerprint,
    )
    return done


def _insert_one(
    store: Store,
    txn: WriteTxn,
    record: ImageRecord,
    name: str,
    vector: np.ndarray,
    fingerprint: str,
    done: Inserted,
) -> bool:
    """Enroll one photo into ``done``; False when it was a duplicate or unreadable."""
    source = Path(record.path)
    try:
        sha256, tmp_path = store.copy_in(source, txn)
    except OSError as exc:
        done.failed.append(EnrollFailure(source, f"cannot be read ({exc.strerror or exc})"))
        return False
    existing = txn.conn.execute(
        "SELECT id, individual_id FROM images WHERE sha256 = ?", (sha256,)
    ).fetchone()
    if existing is not None:
        store.discard(tmp_path)
        done.duplicates.append(Duplicate(source, name, existing[1], existing[0]))
        return False
    stored = store.place(tmp_path, sha256, source, txn)
    if _ensure_individual(txn.conn, name):
        done.new_individuals.append(name)
    image_id = _insert_image(txn.conn, record, name, sha256, stored)
    txn.conn.execute(
        "INSERT INTO embeddings(image_id, model_fingerprint, vector) VALUES (?, ?, ?)",
        (image_id, fingerprint, vector.astype(np.float32).tobytes()),
    )
    done.image_ids.append(image_id)
    done.vectors.append(vector)
    return True


def _ensure_individual(conn: sqlite3.Connection, name: str) -> bool:
    """Insert the individual if new; True when it was."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO individuals(id, created_at) VALUES (?, ?)", (name, utc_now())
    )
    return cursor.rowcount == 1


def _insert_image(
    conn: sqlite3.Connection, record: ImageRecord, name: str, sha256: str, stored: str
) -> int:
    box = json.dumps([int(v) for v in record.box]) if record.box is not None else None
    cursor = conn.execute(
        "INSERT INTO images(individual_id, sha256, stored_path, source_path, date, time, "
        "location, observer, condition, side, sighting, box, enrolled_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            name, sha256, stored, str(record.path), record.date, record.time, record.location,
            record.observer, record.condition, record.side, record.sighting, box, utc_now(),
        ),
    )  # fmt: skip
    return int(cursor.lastrowid)


def rename(txn: WriteTxn, directory: Path, old: str, new: str) -> None:
    """Give individual ``old`` the id ``new`` (validated by the caller); photos follow."""
    old = require_individual(txn.conn, directory, old)
    if txn.conn.execute("SELECT 1 FROM individuals WHERE id = ?", (new,)).fetchone():
        raise GalleryError(
            f"Individual {new!r} already exists in gallery {directory}; merge {old!r} into it "
            f"instead of renaming."
        )
    num_images = _count_images(txn.conn, old)
    txn.conn.execute("UPDATE individuals SET id = ? WHERE id = ?", (new, old))  # cascades
    txn.details.update(old=old, new=new, num_images=num_images)


def merge(txn: WriteTxn, directory: Path, source: str, target: str) -> None:
    """Move every photo of ``source`` to ``target`` and delete ``source``."""
    source = require_individual(txn.conn, directory, source)
    target = require_individual(txn.conn, directory, target)
    if source == target:
        raise GalleryError(f"Cannot merge individual {source!r} into itself; name two ids.")
    num_images = _count_images(txn.conn, source)
    txn.conn.execute(
        "UPDATE images SET individual_id = ? WHERE individual_id = ?", (target, source)
    )
    notes = [
        r[0] for r in txn.conn.execute(
            "SELECT notes FROM individuals WHERE id IN (?, ?) AND notes != '' ORDER BY id = ?",
            (target, source, source),
        )
    ]  # fmt: skip
    txn.conn.execute("UPDATE individuals SET notes = ? WHERE id = ?", ("\n".join(notes), target))
    txn.conn.execute("DELETE FROM individuals WHERE id = ?", (source,))
    txn.details.update(source=source, target=target, num_images=num_images)


def remove(txn: WriteTxn, directory: Path, individual: str) -> list[Path]:
    """Delete an individual's rows; returns its photo copies for the caller to delete after
    the commit (deleting them before would lose photos if the commit failed)."""
    name = require_individual(txn.conn, directory, individual)
    rows = txn.conn.execute(
        "SELECT id, stored_path FROM images WHERE individual_id = ? ORDER BY id", (name,)
    ).fetchall()
    for table in ("embeddings", "local_features"):
        txn.conn.execute(
            f"DELETE FROM {table} WHERE image_id IN "
            "(SELECT id FROM images WHERE individual_id = ?)",
            (name,),
        )
    txn.conn.execute("DELETE FROM images WHERE individual_id = ?", (name,))
    txn.conn.execute("DELETE FROM individuals WHERE id = ?", (name,))
    txn.details.update(individual=name, num_images=len(rows), image_ids=[r[0] for r in rows])
    return [directory / r[1] for r in rows]


def replace_vectors(
    txn: WriteTxn, image_ids: np.ndarray, vectors: np.ndarray, fingerprint: str
) -> None:
    """Swap every embedding for ``vectors`` (N, D) float32 of ``image_ids`` (N,)."""
    txn.conn.execute("DELETE FROM embeddings")
    txn.conn.executemany(
        "INSERT INTO embeddings(image_id, model_fingerprint, vector) VALUES (?, ?, ?)",
        (
            (int(i), fingerprint, v.astype(np.float32).tobytes())
            for i, v in zip(image_ids, vectors, strict=True)
        ),
    )


def _count_images(conn: sqlite3.Connection, individual: str) -> int:
    return conn.execute(
        "SELECT COUNT(*) FROM images WHERE individual_id = ?", (individual,)
    ).fetchone()[0]


def embed_photos(
    embed_fn: Callable[..., np.ndarray],
    paths: list[Path],
    boxes: list[tuple[int, ...] | None],
    batch_size: int,
) -> np.ndarray:
    """Embed ``paths`` (cut to ``boxes``) in batches with ``embed_fn(paths, boxes)``;
    (N, D') float32, L2-normalised; GalleryError on bad output."""
    parts = []
    for begin in range(0, len(paths), batch_size):
        batch = paths[begin : begin + batch_size]
        out = np.asarray(embed_fn(batch, boxes[begin : begin + batch_size]), dtype=np.float32)
        if out.ndim != 2 or len(out) != len(batch) or (parts and out.shape[1] != parts[0].shape[1]):
            raise GalleryError(
                f"The embedding function returned shape {out.shape} for {len(batch)} photos; "
                f"it must return one row of the same length per photo."
            )
        vectors, usable = l2_normalize(out)
        if not usable.all():
            raise GalleryError(
                f"The new model gave a zero or non-finite embedding for stored photo "
                f"{batch[int(np.flatnonzero(~usable)[0])]}; check that photo and the model."
            )
        parts.append(vectors)
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def stored_photos(
    conn: sqlite3.Connection, directory: Path
) -> tuple[np.ndarray, list[Path], list[tuple[int, ...] | None]]:
    """Every stored photo by image id: ids (N,) int64, file paths and crop boxes (None: whole)."""
    rows = conn.execute("SELECT id, stored_path, box FROM images ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    boxes = [tuple(json.loads(r[2])) if r[2] else None for r in rows]
    return ids, [directory / r[1] for r in rows], boxes


def reembed(
    txn: WriteTxn,
    directory: Path,
    embed_fn: Callable[..., np.ndarray],
    fingerprint: str,
    batch_size: int,
) -> int:
    """Recompute every vector from the stored photos with ``embed_fn`` (see
    ``Gallery.reembed``), switch the settings to the new model and clear the calibration, which
    belonged to the old one. Returns the number of photos re-embedded."""
    ids, paths, boxes = stored_photos(txn.conn, directory)
    vectors = embed_photos(embed_fn, paths, boxes, batch_size)
    old_dim = int(get_setting(txn.conn, "embedding_dim", "0"))
    dim = vectors.shape[1] if len(ids) else old_dim
    replace_vectors(txn, ids, vectors, fingerprint)
    txn.details.update(
        old_fingerprint=str(get_setting(txn.conn, "model_fingerprint")),
        new_fingerprint=fingerprint, num_images=len(ids), old_dim=old_dim, new_dim=dim,
    )  # fmt: skip
    set_setting(txn.conn, "model_fingerprint", fingerprint)
    set_setting(txn.conn, "embedding_dim", dim)
    for key in ("threshold", "target_fmr", "calibration", "fused_calibration"):
        set_setting(txn.conn, key, None)
    return len(ids)
