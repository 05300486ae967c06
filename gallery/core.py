"""The :class:`Gallery`: enroll known individuals, identify query photos, keep it all consistent.

The database is the source of truth; the FAISS index is a cache of it stamped with the database
``generation`` it reflects. Writes update and save the index after their commit; readers that
find the index missing, stale or inconsistent rebuild it from the database (and save it when no
writer is busy). See ``gallery/store.py`` for the locking and crash-safety rules.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid.gallery import catalog, edits
from reid.gallery.errors import GalleryError
from reid.gallery.index import check_factory
from reid.gallery.keeper import IndexKeeper
from reid.gallery.matching import build_matches, rank_queries
from reid.gallery.openset import SCORE_MODES, l2_normalize
from reid.gallery.records import (
    Calibration,
    EnrollReport,
    ImageRecord,
    IndividualSummary,
    Match,
    StoredImage,
    validate_individual_id,
)
from reid.gallery.store import Store, file_lock, get_setting, set_setting, utc_now

REEMBED_HINT = (
    "run `reid gallery reembed {dir} --model RUN_DIR` to recompute the gallery with this model"
)


class Gallery:
    """A gallery directory opened for enrolling and identifying. Not shared between threads
    without care: calls are serialised by an internal lock; processes coordinate by ``flock``."""

    def __init__(self, store: Store) -> None:
        """Use :meth:`create`, :meth:`open` or :meth:`open_or_create`."""
        self._store = store
        self._mutex = threading.RLock()
        self._keeper = IndexKeeper(store)

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        model_fingerprint: str,
        embedding_dim: int,
        index_factory: str = "Flat",
        search_params: str = "",
        score_mode: str = "max",
        score_k: int = 3,
        user: str | None = None,
    ) -> Gallery:
        """Make a new, empty gallery at ``directory`` for vectors of one model.

        ``index_factory`` is any faiss factory string ("Flat" = exact); ``search_params`` e.g.
        "nprobe=32" (a recall-friendly default is chosen when empty).
        """
        if not isinstance(model_fingerprint, str) or not model_fingerprint.strip():
            raise GalleryError("A gallery needs a non-empty model fingerprint; pass the model's.")
        if int(embedding_dim) <= 0:
            raise GalleryError(f"Embedding dimension {embedding_dim} must be a positive integer.")
        check_factory(index_factory, int(embedding_dim), search_params)
        _check_scoring(score_mode, score_k)
        settings = {
            "model_fingerprint": model_fingerprint,
            "embedding_dim": int(embedding_dim),
            "index_factory": index_factory,
            "search_params": search_params,
            "score_mode": score_mode,
            "score_k": int(score_k),
            "generation": 0,
            "created_at": utc_now(),
            "created_by": user or "",
        }
        return cls(Store.create(Path(directory), settings))

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Gallery:
        """Open an existing gallery; :class:`GalleryError` if ``directory`` is not one."""
        return cls(Store.open(Path(directory)))

    @classmethod
    def open_or_create(
        cls,
        directory: str | os.PathLike[str],
        *,
        model_fingerprint: str,
        embedding_dim: int,
        **create_options: Any,
    ) -> Gallery:
        """Open ``directory`` if it is a gallery (checking that it suits this model), else
        create it with :meth:`create`'s options."""
        path = Path(directory)
        if not (path / "gallery.sqlite").exists():
            try:
                return cls.create(
                    path,
                    model_fingerprint=model_fingerprint,
                    embedding_dim=embedding_dim,
                    **create_options,
                )
            except GalleryError:
                if not (path / "gallery.sqlite").exists():
                    raise  # else another process created it first: open theirs
        gallery = cls.open(path)
        gallery.check_model(model_fingerprint, embedding_dim)
        return gallery

    def close(self) -> None:
        """Release the database connection."""
        self._store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self.directory)!r})"

    # -------------------------------------------------------------- properties
    @property
    def directory(self) -> Path:
        """The gallery directory."""
        return self._store.directory

    def _setting(self, key: str, default: str | None = None) -> str | None:
        return get_setting(self._store.conn, key, default)

    @property
    def model_fingerprint(self) -> str:
        """Fingerprint of the model whose vectors the gallery holds."""
        return str(self._setting("model_fingerprint"))

    @property
    def embedding_dim(self) -> int:
        """Dimension D of the gallery's vectors."""
        return int(self._setting("embedding_dim", "0"))

    @property
    def generation(self) -> int:
        """Counter bumped by every committed write."""
        return self._store.generation()

    @property
    def threshold(self) -> float | None:
        """The calibrated cosine threshold, or None when uncalibrated."""
        value = self._setting("threshold")
        return None if value is None else float(value)

    def check_model(self, model_fingerprint: str, embedding_dim: int | None = None) -> None:
        """Raise :class:`GalleryError` unless vectors of this model/dimension suit the gallery."""
        ours, hint = self.model_fingerprint, REEMBED_HINT.format(dir=self.directory)
        if model_fingerprint != ours:
            raise GalleryError(
                f"Gallery {self.directory} holds embeddings of model {ours!r} but these come "
                f"from model {model_fingerprint!r}; {hint}, or use the gallery's own model."
            )
        if embedding_dim is not None and embedding_dim != self.embedding_dim:
            raise GalleryError(
                f"Gallery {self.directory} holds {self.embedding_dim}-d embeddings but these are "
                f"{embedding_dim}-d; {hint}, or use the gallery's own model."
            )

    # ------------------------------------------------------------------ enroll
    def enroll(
        self,
        records: Sequence[ImageRecord],
        embeddings: np.ndarray,
        *,
        model_fingerprint: str,
        user: str | None = None,
    ) -> EnrollReport:
        """Add photos of known individuals.

        Args:
            records: one per photo; the photo file is copied into the gallery.
            embeddings: (N, D) float32, one row per record (normalised here again, defensively).
        Returns:
            the report: new image ids, duplicates (already enrolled, skipped), failures.
        """
        records = list(records)
        if not records:
            return EnrollReport([], [], [], [], self.generation)
        matrix = _as_matrix(embeddings, "enroll")
        if len(records) != len(matrix):
            raise GalleryError(
                f"enroll got {len(records)} photo records but {len(matrix)} embedding rows; "
                f"pass one embedding row per photo."
            )
        names = [validate_individual_id(r.individual) for r in records]
        self.check_model(model_fingerprint, matrix.shape[1])
        vectors, usable = l2_normalize(matrix)
        with self._mutex, self._store.write("enroll", user) as txn:
            self.check_model(model_fingerprint, matrix.shape[1])  # a reembed may have won the lock
            done = edits.insert_images(
                self._store, txn, records, names, vectors, usable, model_fingerprint
            )
            added = np.array(done.vectors, dtype=np.float32).reshape(-1, matrix.shape[1])
            ids = np.array(done.image_ids, dtype=np.int64)
            txn.after_commit.append(lambda: self._keeper.after_write(txn.generation, (ids, added)))
        return EnrollReport(
            done.image_ids, done.duplicates, done.failed, done.new_individuals, txn.generation
        )

    # ---------------------------------------------------------------- identify
    def identify(
        self,
        embeddings: np.ndarray,
        *,
        model_fingerprint: str,
        top_k: int = 5,
        exclude_image_ids: Iterable[int] | None = None,
    ) -> list[Match]:
        """Answer "who is this?" for each query vector.

        Args:
            embeddings: (Q, D) or (D,) float32 query embeddings (normalised here).
            top_k: number of candidate individuals returned per query, best first.
            exclude_image_ids: gallery photos to ignore (e.g. the query's own photo).
        Returns:
            one :class:`Match` per query.
        """
        if int(top_k) < 1:
            raise GalleryError(f"top_k must be at least 1 (got {top_k}).")
        matrix = _as_matrix(embeddings, "identify")
        queries, usable = l2_normalize(matrix)
        if not usable.all():
            bad = np.flatnonzero(~usable)[:5].tolist()
            raise GalleryError(f"Query embeddings {bad} are zero or not finite; re-embed them.")
        exclude = [int(i) for i in exclude_image_ids or ()]
        with self._mutex:
            with self._store.read() as conn:
                self.check_model(model_fingerprint, matrix.shape[1])  # in this snapshot
                view = self._keeper.view(conn)
                mode = str(get_setting(conn, "score_mode", "max"))
                score_k = int(get_setting(conn, "score_k", "3"))
                threshold = get_setting(conn, "threshold")
                ranked = rank_queries(
                    view, queries, top_k=int(top_k), score_mode=mode, score_k=score_k,
                    exclude_ids=exclude,
                    vectors_of=lambda names: catalog.vectors_of(conn, names, matrix.shape[1]),
                )  # fmt: skip
                paths = catalog.stored_paths(conn, [c[2] for r in ranked for c in r])
            self._keeper.save_if_pending()
        return build_matches(
            ranked,
            None if threshold is None else float(threshold),
            lambda image_id: self.directory / paths[image_id],
        )

    # ------------------------------------------------------------- calibration
    def calibrate(
        self,
        *,
        target_fmr: float = 0.05,
        score_mode: str | None = None,
        score_k: int | None = None,
        max_queries: int = 20_000,
        seed: int = 0,
        user: str | None = None,
        trained_individuals: Collection[str] | None = None,
    ) -> Calibration:
        """Measure the open-set threshold on the gallery itself (leave-one-individual-out).

        ``score_mode``/``score_k`` change how individuals are scored from now on (the threshold
        belongs to the scoring). Above ``max_queries`` photos, that many queries are sampled
        (seeded). See :func:`reid.gallery.openset.loo_trials` for the trials.
        ``trained_individuals``: the ids the embedding model was trained on; when the gallery
        holds at least two others, only those play the never-seen animal (see
        :func:`reid.gallery.calibration.unknown_pool`), else the result is marked optimistic.
        """
        from reid.gallery.calibration import run_calibration  # keeps this module short

        if not 0.0 < float(target_fmr) < 1.0:
            raise GalleryError(f"target_fmr must be between 0 and 1 (got {target_fmr}).")
        with self._mutex, self._store.write("calibrate", user) as txn:
            mode = score_mode or str(get_setting(txn.conn, "score_mode", "max"))
            k = int(score_k if score_k is not None else get_setting(txn.conn, "score_k", "3"))
            _check_scoring(mode, k)
            result = run_calibration(
                txn, self.directory, target_fmr=float(target_fmr), score_mode=mode,
                score_k=k, max_queries=max_queries, seed=seed,
                trained_individuals=trained_individuals,
            )  # fmt: skip
            txn.after_commit.append(lambda: self._keeper.after_write(txn.generation))
        return result

    # ---------------------------------------------------------------- curation
    def rename(self, old: str, new: str, *, user: str | None = None) -> None:
        """Give individual ``old`` the id ``new`` (which must not exist yet)."""
        new = validate_individual_id(new)
        with self._mutex, self._store.write("rename", user) as txn:
            edits.rename(txn, self.directory, old, new)
            txn.after_commit.append(lambda: self._keeper.after_write(txn.generation))

    def merge(self, source: str, target: str, *, user: str | None = None) -> None:
        """Move all photos of ``source`` to ``target`` (one animal, two ids); drop ``source``."""
        with self._mutex, self._store.write("merge", user) as txn:
            edits.merge(txn, self.directory, source, target)
            txn.after_commit.append(lambda: self._keeper.after_write(txn.generation))

    def remove(self, individual: str, *, user: str | None = None) -> None:
        """Delete an individual with its images, vectors and stored photo copies."""
        with self._mutex, self._store.write("remove", user) as txn:
            doomed = edits.remove(txn, self.directory, individual)
            txn.after_commit.append(lambda: [p.unlink(missing_ok=True) for p in doomed])
            txn.after_commit.append(lambda: self._keeper.after_write(txn.generation, rebuild=True))

    def reembed(
        self,
        embed_fn: Callable[..., np.ndarray],
        *,
        model_fingerprint: str,
        user: str | None = None,
        batch_size: int = 64,
    ) -> int:
        """Recompute every vector from the stored photo copies with another model.

        ``embed_fn(paths, boxes)`` returns (len(paths), D') embeddings for a batch of stored
        photos, each cut to its stored crop box first (``boxes[i]``, None: the whole photo).
        Vectors, fingerprint and dimension are replaced in one transaction and the calibration,
        which belonged to the old model, is cleared. Returns the number of photos re-embedded.
        """
        if not isinstance(model_fingerprint, str) or not model_fingerprint.strip():
            raise GalleryError("reembed needs the new model's non-empty fingerprint.")
        with self._mutex, self._store.write("reembed", user) as txn:
            rows = txn.conn.execute(
                "SELECT id, stored_path, box FROM images ORDER BY id"
            ).fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            paths = [self.directory / r[1] for r in rows]
            boxes = [tuple(json.loads(r[2])) if r[2] else None for r in rows]
            vectors = edits.embed_photos(embed_fn, paths, boxes, batch_size)
            dim = vectors.shape[1] if len(rows) else self.embedding_dim
            edits.replace_vectors(txn, ids, vectors, model_fingerprint)
            txn.details.update(
                old_fingerprint=self.model_fingerprint, new_fingerprint=model_fingerprint,
                num_images=len(rows), old_dim=self.embedding_dim, new_dim=dim,
            )  # fmt: skip
            set_setting(txn.conn, "model_fingerprint", model_fingerprint)
            set_setting(txn.conn, "embedding_dim", dim)
            for key in ("threshold", "target_fmr", "calibration"):
                set_setting(txn.conn, key, None)
            txn.after_commit.append(lambda: self._keeper.after_write(txn.generation, rebuild=True))
        return len(rows)

    def rebuild_index(self) -> dict[str, Any]:
        """Rebuild and save the index from the database (e.g. to retrain IVF after growth)."""
        with self._mutex, file_lock(self._store.lock_path):
            return self._keeper.after_write(self._store.generation(), rebuild=True).describe()

    # ----------------------------------------------------------------- reading
    def individuals(self) -> list[IndividualSummary]:
        """Every known individual with photo count and first/last date."""
        with self._mutex, self._store.read() as conn:
            return catalog.individuals(conn)

    def images(self, individual: str | None = None) -> list[StoredImage]:
        """Stored photos of ``individual`` (all when None); unknown individual -> GalleryError."""
        with self._mutex, self._store.read() as conn:
            return catalog.images(conn, self.directory, individual)

    def audit_log(self) -> list[dict[str, Any]]:
        """Every write ever made, oldest first: id, at (UTC ISO), user, action, details."""
        with self._mutex, self._store.read() as conn:
            return catalog.audit_rows(conn)

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write a CSV of sightings (one row per photo, :data:`catalog.EXPORT_COLUMNS`)."""
        with self._mutex, self._store.read() as conn:
            return catalog.write_export(conn, Path(path))

    def info(self) -> dict[str, Any]:
        """Counts, model, index (type, device, fallback note) and calibration state."""
        with self._mutex:
            with self._store.read() as conn:
                view = self._keeper.view(conn)
                counts = catalog.counts(conn)
                settings = dict(conn.execute("SELECT key, value FROM settings"))
            self._keeper.save_if_pending()
        return catalog.describe(self.directory, settings, counts, view.index.describe())


def _check_scoring(score_mode: str, score_k: int) -> None:
    if score_mode not in SCORE_MODES:
        raise GalleryError(f"Score mode {score_mode!r} is not one of {', '.join(SCORE_MODES)}.")
    if int(score_k) < 1:
        raise GalleryError(f"score_k must be at least 1 (got {score_k}).")


def _as_matrix(embeddings: np.ndarray, what: str) -> np.ndarray:
    """(N, D) float32 from (N, D) or (D,) input."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise GalleryError(f"{what} needs embeddings shaped (N, D); got {matrix.shape}.")
    return matrix
