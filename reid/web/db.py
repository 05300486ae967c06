"""The web app's own database (``<data dir>/web.sqlite``): submissions and their photos (which
are also the identification queue and the review queue), reviewers, sessions and alerts.

The gallery stays the one truth about individuals: this database only says what was submitted,
what the machine proposed and what a reviewer decided, and the decision itself is written into
the gallery by its own enroll (see :mod:`reid.web.review`). Commits are durable
(``synchronous = FULL`` in WAL mode), so an upload acknowledged to a volunteer survives a
``kill -9`` or a power cut.

A photo's ``status`` walks ``queued -> working -> review -> done``, or ends at ``unusable``
(with its ``reason``); a worker that dies mid-batch leaves ``working`` rows, which
:meth:`WebDB.requeue_interrupted` puts back in the queue at start-up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from reid.gallery.store import utc_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY,            -- the receipt token: random, unguessable
    created_at TEXT NOT NULL,
    observer TEXT NOT NULL DEFAULT '',
    contact TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    refused TEXT NOT NULL DEFAULT '[]'  -- JSON: files of this submission refused, and why
);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    original_name TEXT NOT NULL,    -- shown to people only, never used as a path
    stored_name TEXT NOT NULL,      -- <sha256>.<format>, chosen from the content
    sha256 TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    date TEXT NOT NULL DEFAULT '',
    latitude REAL,
    longitude REAL,
    site TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,           -- queued | working | review | unusable | done
    reason TEXT NOT NULL DEFAULT '',
    result TEXT,                    -- JSON: decision, candidates, probabilities, screen
    vector BLOB,                    -- (D,) float32 embedding, for proposed groups
    margin REAL,                    -- |score - threshold|: small = uncertain, reviewed first
    queued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, -- identifications that failed on the server
    retry_at TEXT,                  -- not claimed again before this time (UTC ISO)
    identified_at TEXT,
    action TEXT NOT NULL DEFAULT '', -- confirm | assign | new | reject
    individual TEXT NOT NULL DEFAULT '',
    review_reason TEXT NOT NULL DEFAULT '',
    reviewed_by TEXT NOT NULL DEFAULT '',
    reviewed_at TEXT
);
CREATE INDEX IF NOT EXISTS photos_status ON photos(status);
CREATE INDEX IF NOT EXISTS photos_submission ON photos(submission_id);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,    -- sha256 of the cookie: a stolen database opens no session
    user TEXT NOT NULL REFERENCES users(name),
    csrf TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,             -- distance | catchment | hybrid
    individual TEXT NOT NULL,
    photo_id INTEGER REFERENCES photos(id),
    message TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS review_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    photo_id INTEGER NOT NULL REFERENCES photos(id),
    action TEXT NOT NULL,
    individual TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class NewPhoto:
    """A checked upload, already stored under ``stored_name``, to be queued."""

    original_name: str
    stored_name: str
    sha256: str
    format: str
    width: int
    height: int
    date: str = ""
    latitude: float | None = None
    longitude: float | None = None
    site: str = ""


class WebDB:
    """One connection shared by the app's threads, each call serialised by a lock (calls are
    short; SQLite allows one writer anyway). Other processes may open the same file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")  # an acknowledged upload is on disk
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.executescript(SCHEMA)
        os.chmod(self.path, 0o600)  # contacts and password hashes: the server's user only

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), rolled back on error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    # ------------------------------------------------------------- submissions
    def add_submission(
        self, receipt: str, photos: Sequence[NewPhoto], *, observer: str = "", contact: str = "",
        notes: str = "", refused: Sequence[str] = (),
    ) -> list[int]:  # fmt: skip
        """Store a submission and queue its photos in one transaction; returns the photo ids."""
        now = utc_now()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO submissions(id, created_at, observer, contact, notes, refused) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (receipt, now, observer, contact, notes, json.dumps(list(refused))),
            )
            ids = []
            for p in photos:
                cur = conn.execute(
                    "INSERT INTO photos(submission_id, original_name, stored_name, sha256, "
                    "format, width, height, date, latitude, longitude, site, status, queued_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (receipt, p.original_name, p.stored_name, p.sha256, p.format, p.width,
                     p.height, p.date, p.latitude, p.longitude, p.site, now),
                )  # fmt: skip
                ids.append(int(cur.lastrowid))
        return ids

    def submission(self, receipt: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM submissions WHERE id = ?", (receipt,))
        if not rows:
            return None
        out = rows[0]
        out["refused"] = json.loads(out["refused"])
        out["photos"] = [_decoded(p) for p in self.query(
            "SELECT * FROM photos WHERE submission_id = ? ORDER BY id", (receipt,))]  # fmt: skip
        return out

    def photo(self, photo_id: int) -> dict[str, Any] | None:
        if not 0 < photo_id < 2**63:  # SQLite's integer range; no such photo either way
            return None
        rows = self.query("SELECT * FROM photos WHERE id = ?", (photo_id,))
        return _decoded(rows[0]) if rows else None

    # ------------------------------------------------------------------- queue
    def requeue_interrupted(self) -> int:
        """Photos a dead worker left half-done go back to the queue; returns how many."""
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE photos SET status = 'queued' WHERE status = 'working'"
            ).rowcount

    def claim(self, limit: int) -> list[dict[str, Any]]:
        """Mark up to ``limit`` queued photos (oldest first) as being worked on; return them."""
        with self.transaction() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    "SELECT id, stored_name, attempts FROM photos WHERE status = 'queued' "
                    "AND (retry_at IS NULL OR retry_at <= ?) ORDER BY id LIMIT ?",
                    (utc_now(), limit),
                )
            ]
            conn.executemany(
                "UPDATE photos SET status = 'working' WHERE id = ?", [(r["id"],) for r in rows]
            )
        return rows

    def retry_later(self, photo_id: int, delay_s: float) -> None:
        """Put a photo whose identification failed back in the queue, not before ``delay_s``."""
        when = datetime.now(timezone.utc) + timedelta(seconds=delay_s)
        with self.transaction() as conn:
            conn.execute(
                "UPDATE photos SET status = 'queued', attempts = attempts + 1, retry_at = ? "
                "WHERE id = ?",
                (when.isoformat(timespec="seconds"), photo_id),
            )

    def finish(
        self, photo_id: int, *, result: dict[str, Any] | None, reason: str = "",
        vector: np.ndarray | None = None, margin: float | None = None,
    ) -> None:  # fmt: skip
        """Store the machine's answer: ``result`` (awaiting review) or ``reason`` (unusable)."""
        status = "review" if result is not None else "unusable"
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        with self.transaction() as conn:
            conn.execute(
                "UPDATE photos SET status = ?, reason = ?, result = ?, vector = ?, margin = ?, "
                "identified_at = ? WHERE id = ?",
                (status, reason, None if result is None else json.dumps(result), blob, margin,
                 utc_now(), photo_id),
            )  # fmt: skip

    def counts(self) -> dict[str, int]:
        rows = self.query("SELECT status, COUNT(*) AS n FROM photos GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    def pending_review(self, limit: int = 200) -> list[dict[str, Any]]:
        """Photos awaiting a reviewer, most uncertain (smallest margin) first."""
        rows = self.query(
            "SELECT * FROM photos WHERE status = 'review' "
            "ORDER BY COALESCE(margin, 0) ASC, id ASC LIMIT ?",
            (limit,),
        )
        return [_decoded(r) for r in rows]

    def pending_new_vectors(self) -> list[tuple[int, np.ndarray]]:
        """(photo id, vector) of photos awaiting review that the machine called NEW."""
        rows = self.query(
            "SELECT id, vector, result FROM photos WHERE status = 'review' AND vector IS NOT NULL"
        )
        return [
            (r["id"], np.frombuffer(r["vector"], dtype=np.float32))
            for r in rows
            if json.loads(r["result"] or "{}").get("is_new")
        ]

    def record_review(
        self, photo_id: int, user: str, action: str, individual: str = "", reason: str = ""
    ) -> None:
        now = utc_now()
        with self.transaction() as conn:
            conn.execute(
                "UPDATE photos SET status = 'done', action = ?, individual = ?, "
                "review_reason = ?, reviewed_by = ?, reviewed_at = ? WHERE id = ?",
                (action, individual, reason, user, now, photo_id),
            )
            conn.execute(
                "INSERT INTO review_log(at, user, photo_id, action, individual, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (now, user, photo_id, action, individual, reason),
            )

    # ------------------------------------------------------------------ alerts
    def add_alert(
        self, kind: str, individual: str, photo_id: int | None, message: str,
        details: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO alerts(created_at, kind, individual, photo_id, message, details) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (utc_now(), kind, individual, photo_id, message, json.dumps(details or {})),
            )

    def alerts(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM alerts ORDER BY id DESC")
        for r in rows:
            r["details"] = json.loads(r["details"])
        return rows

    # ------------------------------------------------------------------- users
    def add_user(self, name: str, password_hash: str, role: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO users(name, password_hash, role, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash, "
                "role = excluded.role",
                (name, password_hash, role, utc_now()),
            )

    def user(self, name: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM users WHERE name = ?", (name,))
        return rows[0] if rows else None


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A photos row with its JSON result and (D,) float32 vector decoded (None where absent)."""
    row["result"] = json.loads(row["result"]) if row["result"] else None
    vec = row.get("vector")
    row["vector"] = None if vec is None else np.frombuffer(vec, dtype=np.float32)
    return row


__all__ = ["NewPhoto", "WebDB"]
