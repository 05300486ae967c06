"""Read-side SQL: everything the gallery reads out of its database, as numpy arrays or records.

Each function takes an open connection and runs plain SELECTs; call them inside
:meth:`reid.gallery.store.Store.read` (or a write transaction) to get one consistent snapshot.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from reid.gallery.errors import GalleryError
from reid.gallery.records import IndividualSummary, StoredImage
from reid.gallery.store import TMP_PREFIX

EXPORT_COLUMNS = (
    "individual",
    "image",
    "date",
    "time",
    "location",
    "observer",
    "condition",
    "side",
    "sighting",
    "image_id",
    "stored_path",
)
_MAX_SQL_PARAMS = 900  # stay below SQLite's host-parameter limit on old builds


def _chunks(items: list[Any], size: int = _MAX_SQL_PARAMS) -> Iterator[list[Any]]:
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]


def blob_matrix(blobs: list[bytes], dim: int) -> np.ndarray:
    """Stack float32 vector blobs into an (N, dim) float32 array."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()


def load_vectors(conn: sqlite3.Connection, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """All gallery vectors: image ids (N,) int64 ascending and vectors (N, dim) float32."""
    rows = conn.execute("SELECT image_id, vector FROM embeddings ORDER BY image_id").fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return ids, blob_matrix([r[1] for r in rows], dim)


def load_labels(conn: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image ids (N,) int64 ascending, their individual index (N,) int32 and the id names."""
    rows = conn.execute(
        "SELECT i.id, i.individual_id FROM images i JOIN embeddings e ON e.image_id = i.id "
        "ORDER BY i.id"
    ).fetchall()
    names = sorted({r[1] for r in rows})
    position = {name: j for j, name in enumerate(names)}
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    labels = np.array([position[r[1]] for r in rows], dtype=np.int32)
    return ids, labels, names


def load_calibration_inputs(
    conn: sqlite3.Connection, dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Vectors (N, dim) float32, individual labels (N,) int, sighting groups (N,) int, and the
    individuals' ids (label j is ``names[j]``). Photos without a recorded sighting each get a
    group of their own."""
    rows = conn.execute(
        "SELECT i.individual_id, i.sighting, e.vector FROM images i "
        "JOIN embeddings e ON e.image_id = i.id ORDER BY i.id"
    ).fetchall()
    names = {name: j for j, name in enumerate(sorted({r[0] for r in rows}))}
    group_ids: dict[tuple[str, str], int] = {}
    groups = np.empty(len(rows), dtype=np.int64)
    for n, (individual, sighting, _) in enumerate(rows):
        key = (individual, sighting) if sighting.strip() else (individual, f"\0{n}")
        groups[n] = group_ids.setdefault(key, len(group_ids))
    labels = np.array([names[r[0]] for r in rows], dtype=np.int64)
    return blob_matrix([r[2] for r in rows], dim), labels, groups, list(names)


def vectors_of(
    conn: sqlite3.Connection, individuals: Iterable[str], dim: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each individual: its image ids (n,) int64 and vectors (n, dim) float32."""
    found: dict[str, tuple[list[int], list[bytes]]] = {}
    for chunk in _chunks(list(individuals)):
        marks = ",".join("?" * len(chunk))
        for individual, image_id, blob in conn.execute(
            "SELECT i.individual_id, i.id, e.vector FROM images i JOIN embeddings e "
            f"ON e.image_id = i.id WHERE i.individual_id IN ({marks}) ORDER BY i.id",
            chunk,
        ):
            ids, blobs = found.setdefault(individual, ([], []))
            ids.append(image_id)
            blobs.append(blob)
    return {
        name: (np.array(ids, dtype=np.int64), blob_matrix(blobs, dim))
        for name, (ids, blobs) in found.items()
    }


def stored_paths(conn: sqlite3.Connection, image_ids: Iterable[int]) -> dict[int, str]:
    """``stored_path`` (relative to the gallery directory) of each given image id."""
    out: dict[int, str] = {}
    for chunk in _chunks(sorted({int(i) for i in image_ids})):
        marks = ",".join("?" * len(chunk))
        out.update(conn.execute(f"SELECT id, stored_path FROM images WHERE id IN ({marks})", chunk))
    return out


def require_individual(conn: sqlite3.Connection, directory: Path, individual: str) -> str:
    """``individual`` (stripped) if the gallery knows it, else :class:`GalleryError`."""
    name = individual.strip() if isinstance(individual, str) else individual
    if conn.execute("SELECT 1 FROM individuals WHERE id = ?", (name,)).fetchone() is None:
        count = conn.execute("SELECT COUNT(*) FROM individuals").fetchone()[0]
        raise GalleryError(
            f"Individual {individual!r} is not in gallery {directory} (it knows {count} "
            f"individuals); check the id's spelling and case."
        )
    return name


def individuals(conn: sqlite3.Connection) -> list[IndividualSummary]:
    """Every individual with its photo count and first/last non-empty date, sorted by id."""
    rows = conn.execute(
        "SELECT n.id, COUNT(i.id), MIN(NULLIF(i.date, '')), MAX(NULLIF(i.date, '')), "
        "n.created_at, n.notes FROM individuals n LEFT JOIN images i ON i.individual_id = n.id "
        "GROUP BY n.id ORDER BY n.id"
    ).fetchall()
    return [IndividualSummary(r[0], r[1], r[2] or "", r[3] or "", r[4], r[5]) for r in rows]


_IMAGE_COLUMNS = (
    "id, individual_id, sha256, stored_path, source_path, date, time, location, observer, "
    "condition, side, sighting, box, enrolled_at"
)


def images(
    conn: sqlite3.Connection, directory: Path, individual: str | None = None
) -> list[StoredImage]:
    """Stored photos (of one individual, or all), ordered by image id."""
    if individual is None:
        rows = conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY id").fetchall()
    else:
        name = require_individual(conn, directory, individual)
        rows = conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE individual_id = ? ORDER BY id", (name,)
        ).fetchall()
    return [_stored_image(directory, row) for row in rows]


def image(conn: sqlite3.Connection, directory: Path, image_id: int) -> StoredImage | None:
    """One stored photo by its image id, or None when there is no such photo."""
    if not 0 < image_id < 2**63:
        return None
    row = conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
    return None if row is None else _stored_image(directory, row)


def _stored_image(directory: Path, row: tuple[Any, ...]) -> StoredImage:
    box = tuple(json.loads(row[12])) if row[12] else None
    return StoredImage(
        row[0], row[1], row[2], directory / row[3], *row[4:12], box=box, enrolled_at=row[13]
    )


def export_rows(conn: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    """One row per photo in :data:`EXPORT_COLUMNS` order, by individual, date, time, image id.

    ``image`` is the photo's original path as given at enroll, which is what field teams know.
    """
    yield from conn.execute(
        "SELECT individual_id, source_path, date, time, location, observer, condition, side, "
        "sighting, id, stored_path FROM images ORDER BY individual_id, date, time, id"
    )


def audit_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The audit log oldest first: id, at, user, action and details (parsed JSON)."""
    rows = conn.execute("SELECT id, at, user, action, details FROM audit ORDER BY id").fetchall()
    return [
        {"id": r[0], "at": r[1], "user": r[2], "action": r[3], "details": json.loads(r[4])}
        for r in rows
    ]


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(number of individuals, number of images)."""
    num_individuals = conn.execute("SELECT COUNT(*) FROM individuals").fetchone()[0]
    num_images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    return num_individuals, num_images


def write_export(conn: sqlite3.Connection, path: Path) -> Path:
    """Write :func:`export_rows` as CSV to ``path`` (temp file + rename: never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(export_rows(conn))
    os.replace(tmp, path)
    return path


def describe(
    directory: Path,
    settings: dict[str, str],
    counts: tuple[int, int],
    index: dict[str, Any],
    local_features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The gallery's ``info()`` dict from its settings, counts, index description and local
    feature statistics (:class:`reid.gallery.local.LocalStats` as a dict)."""
    calibration = json.loads(settings["calibration"]) if "calibration" in settings else None
    return {
        "directory": str(directory),
        "schema_version": int(settings["schema_version"]),
        "generation": int(settings["generation"]),
        "created_at": settings.get("created_at", ""),
        "num_individuals": counts[0],
        "num_images": counts[1],
        "model_fingerprint": settings["model_fingerprint"],
        "embedding_dim": int(settings["embedding_dim"]),
        "score_mode": settings.get("score_mode", "max"),
        "score_k": int(settings.get("score_k", "3")),
        "index": index,
        "calibrated": calibration is not None,
        "threshold": float(settings["threshold"]) if "threshold" in settings else None,
        "target_fmr": float(settings["target_fmr"]) if "target_fmr" in settings else None,
        "calibration": calibration if calibration is not None else "uncalibrated",
        "local_features": local_features,
        "local_scorer": json.loads(settings.get("local_scorer") or "null"),
        "fused_calibration": _fused_summary(settings.get("fused_calibration")),
    }


def _fused_summary(value: str | None) -> dict[str, Any] | None:
    """A stored fused calibration without its calibrators' breakpoints (what people read)."""
    if value is None:
        return None
    data = json.loads(value)
    return {k: v for k, v in data.items() if k not in ("fusion", "summary")}
