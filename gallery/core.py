"""The :class:`Gallery`: enroll known individuals, search and identify queries, stay consistent.

The database is the source of truth; the FAISS index is a cache of it stamped with the database
``generation`` it reflects. Writes update and save the index after their commit; readers that
find the index missing, stale or inconsistent rebuild it from the database (and save it when no
writer is busy). See ``gallery/store.py`` for the locking and crash-safety rules.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid.gallery import catalog, edits, local
from reid.gallery.decide import decide
from reid.gallery.errors import GalleryError
from reid.gallery.index import check_factory
from reid.gallery.keeper import IndexKeeper
from reid.gallery.openset import check_scoring, l2_normalize
from reid.gallery.records import (
    Calibration,
    Candidate,
    EnrollReport,
    ImageRecord,
    IndividualSummary,
    Match,
    StoredImage,
    validate_individual_id,
)
from reid.gallery.search import prepare_queries, rank_queries, to_candidates
from reid.gallery.store import Store, file_lock, get_setting, utc_now

REEMBED_HINT = (
    "run `reid gallery reembed {dir} --model RUN_DIR` to recompute the gallery with this model"
)


class Gallery(local.LocalFeatureMethods):
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
        check_scoring(score_mode, score_k)
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
        local_features: Sequence[bytes | None] | None = None,
        local_fingerprint: str | None = None,
        local_scorer: dict[str, Any] | None = None,
    ) -> EnrollReport:
        """Add photos of known individuals.

        Args:
            records: one per photo; the photo file is copied into the gallery.
            embeddings: (N, D) float32, one row per record (normalised here again, defensively).
            local_features: optional opaque blob (or None) per record, stored in the same
                transaction under ``local_fingerprint`` (see :mod:`reid.gallery.local`);
                ``local_scorer`` (JSON-able ``{"name", "settings"}``) says how to rebuild the
                extractor, recorded with the first stored blobs.
        Returns:
            the report: new image ids, duplicates (already enrolled, skipped), failures.
        """
        records = list(records)
        if not records:
            return EnrollReport([], [], [], [], self.generation)
        matrix, names = edits.enroll_inputs(records, embeddings)
        self.check_model(model_fingerprint, matrix.shape[1])
        blobs = self._prepare_local(len(records), local_features, local_fingerprint)
        vectors, usable = l2_normalize(matrix)
        with self._mutex, self._store.write("enroll", user) as txn:
            self.check_model(model_fingerprint, matrix.shape[1])  # a reembed may have won the lock
            done = edits.insert_images(
                self._store, txn, records, names, vectors, usable, model_fingerprint
            )
            local.insert(txn, self.directory, done, blobs, local_fingerprint, local_scorer)
            added = np.array(done.vectors, dtype=np.float32).reshape(-1, matrix.shape[1])
            ids = np.array(done.image_ids, dtype=np.int64)
            txn.after_commit.append(lambda: self._keeper.after_write(txn.generation, (ids, added)))
        return EnrollReport(
            done.image_ids, done.duplicates, done.failed, done.new_individuals, txn.generation
        )

    # ---------------------------------------------------------- search, identify
    def search(
        self,
        embeddings: np.ndarray,
        *,
        model_fingerprint: str,
        top_k: int = 5,
        exclude_image_ids: Iterable[int] | None = None,
    ) -> list[list[Candidate]]:
        """The ``top_k`` nearest individuals of each query vector, no threshold applied.

        Args:
            embeddings: (Q, D) or (D,) float32 query embeddings (normalised here).
            top_k: number of candidate individuals returned per query.
            exclude_image_ids: gallery photos to ignore (e.g. the query's own photo).
        Returns:
            per query, its candidates best first, scored by cosine similarity in [-1, 1]
            (``score_mode``: best photo or top-k mean); empty for an empty gallery.
        """
        return self._search(embeddings, model_fingerprint, top_k, exclude_image_ids)[0]

    def search_with_threshold(
        self,
        embeddings: np.ndarray,
        *,
        model_fingerprint: str,
        top_k: int = 5,
        exclude_image_ids: Iterable[int] | None = None,
    ) -> tuple[list[list[Candidate]], float | None]:
        """:meth:`search` and the calibrated threshold (None: uncalibrated), both read in one
        snapshot, so a calibration running meanwhile cannot pair one scoring with the other's
        threshold."""
        return self._search(embeddings, model_fingerprint, top_k, exclude_image_ids)

    def identify(
        self,
        embeddings: np.ndarray,
        *,
        model_fingerprint: str,
        top_k: int = 5,
        exclude_image_ids: Iterable[int] | None = None,
    ) -> list[Match]:
        """Answer "who is this?" for each query vector: :meth:`search`, then
        :func:`reid.gallery.decide.decide` at the calibrated threshold (read in the same
        snapshot as the vectors). Arguments as for :meth:`search`; one :class:`Match` per query.
        """
        found, threshold = self._search(
            embeddings, model_fingerprint, top_k, exclude_image_ids, what="identify"
        )
        return [decide(candidates, threshold) for candidates in found]

    def _search(
        self,
        embeddings: np.ndarray,
        model_fingerprint: str,
        top_k: int,
        exclude_image_ids: Iterable[int] | None,
        what: str = "search",
    ) -> tuple[list[list[Candidate]], float | None]:
        """Candidates per query and the threshold, both from one database snapshot; ``what``
        names the public call in errors."""
        queries = prepare_queries(embeddings, top_k, what)
        exclude = [int(i) for i in exclude_image_ids or ()]
        with self._mutex:
            with self._store.read() as conn:
                self.check_model(model_fingerprint, queries.shape[1])  # in this snapshot
                view = self._keeper.view(conn)
                mode = str(get_setting(conn, "score_mode", "max"))
                score_k = int(get_setting(conn, "score_k", "3"))
                threshold = get_setting(conn, "threshold")
                ranked = rank_queries(
                    view, queries, top_k=int(top_k), score_mode=mode, score_k=score_k,
                    exclude_ids=exclude,
                    vectors_of=lambda names: catalog.vectors_of(conn, names, queries.shape[1]),
                )  # fmt: skip
                paths = catalog.stored_paths(conn, [c[2] for r in ranked for c in r])
            self._keeper.save_if_pending()
        candidates = to_candidates(ranked, lambda image_id: self.directory / paths[image_id])
        return candidates, None if threshold is None else float(threshold)

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
        fused: dict[str, Any] | None = None,
        expect_generation: int | None = None,
    ) -> Calibration:
        """Measure the open-set threshold on the gallery itself (leave-one-individual-out).

        ``score_mode``/``score_k`` change how individuals are scored from now on (the threshold
        belongs to the scoring). Above ``max_queries`` photos, that many queries are sampled
        (seeded). See :func:`reid.gallery.threshold.loo_trials` for the trials.
        ``trained_individuals``: the ids the embedding model was trained on; when the gallery
        holds at least two others, only those play the never-seen animal (see
        :func:`reid.gallery.threshold.unknown_pool`), else the result is marked optimistic.
        ``fused``: a re-ranker's calibration (plain JSON data, ``reid.matching.fused``) stored in
        the same transaction, ``{}`` to drop a stored one, None to keep it; it was measured on
        the snapshot of ``expect_generation``, so a gallery changed since is refused.
        """
        from reid.gallery.threshold import run_calibration  # keeps this module short

        if not 0.0 < float(target_fmr) < 1.0:
            raise GalleryError(f"target_fmr must be between 0 and 1 (got {target_fmr}).")
        with self._mutex, self._store.write("calibrate", user) as txn:
            mode = score_mode or str(get_setting(txn.conn, "score_mode", "max"))
            k = int(score_k if score_k is not None else get_setting(txn.conn, "score_k", "3"))
            check_scoring(mode, k)
            local.check_generation(txn, self.directory, expect_generation)
            result = run_calibration(
                txn, self.directory, target_fmr=float(target_fmr), score_mode=mode,
                score_k=k, max_queries=max_queries, seed=seed,
                trained_individuals=trained_individuals,
            )  # fmt: skip
            local.store_fused(txn, fused)
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
        local_fn: local.LocalFn | None = None,
        local_fingerprint: str | None = None,
        local_scorer: dict[str, Any] | None = None,
    ) -> int:
        """Recompute every vector from the stored photo copies with another model.

        ``embed_fn(paths, boxes)`` returns (len(paths), D') embeddings for a batch of stored
        photos, each cut to its stored crop box first (``boxes[i]``, None: the whole photo).
        Vectors, fingerprint and dimension are replaced in one transaction and the calibration,
        which belonged to the old model, is cleared. Returns the number of photos re-embedded.
        ``local_fn(paths, boxes)``, if given, likewise replaces every photo's local features
        (:func:`reid.gallery.local.reextract`, ``local_scorer``: as for :meth:`enroll`); without
        it they are kept as they are. A fused calibration is cleared with the cosine one.
        """
        if not isinstance(model_fingerprint, str) or not model_fingerprint.strip():
            raise GalleryError("reembed needs the new model's non-empty fingerprint.")
        local.require_fingerprint(local_fn, local_fingerprint)
        with self._mutex, self._store.write("reembed", user) as txn:
            count = edits.reembed(txn, self.directory, embed_fn, model_fingerprint, batch_size)
            local.reextract(
                txn, self.directory, local_fn, local_fingerprint, batch_size, local_scorer
            )
            txn.after_commit.append(lambda: self._keeper.after_write(txn.generation, rebuild=True))
        return count

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

    def image(self, image_id: int) -> StoredImage | None:
        """One stored photo by its image id (as in a :class:`Candidate`), None if absent."""
        with self._mutex, self._store.read() as conn:
            return catalog.image(conn, self.directory, image_id)

    def audit_log(self) -> list[dict[str, Any]]:
        """Every write ever made, oldest first: id, at (UTC ISO), user, action, details."""
        with self._mutex, self._store.read() as conn:
            return catalog.audit_rows(conn)

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write a CSV of sightings (one row per photo, :data:`catalog.EXPORT_COLUMNS`)."""
        with self._mutex, self._store.read() as conn:
            return catalog.write_export(conn, Path(path))

    def info(self) -> dict[str, Any]:
        """Counts, model, index (type, device, fallback note), calibration, local features."""
        with self._mutex:
            with self._store.read() as conn:
                view = self._keeper.view(conn)
                counts = catalog.counts(conn)
                settings = dict(conn.execute("SELECT key, value FROM settings"))
                stats = local.stats(conn).as_dict()
            self._keeper.save_if_pending()
        return catalog.describe(self.directory, settings, counts, view.index.describe(), stats)
