"""Identification off the request path: worker threads take queued photos in batches and run
the same :func:`reid.pipeline.match_photos` as ``reid match`` on them.

A photo that cannot be used (unreadable, no head found) is marked unusable with the reason; a
batch that fails as a whole is retried photo by photo, so one bad photo never stalls the queue.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from reid.web.db import WebDB
from reid.web.service import Service

log = logging.getLogger("reid.web")
MAX_ATTEMPTS = 3  # identifications of one photo that fail on the server before giving up
RETRY_DELAY_S = 60.0  # before the second attempt; x4 before each later one


def row_result(row: Any, scorer: str, decides: str) -> dict[str, Any]:
    """The JSON the review queue shows for one identified photo (a :class:`MatchRow`);
    ``scorer`` named the candidates, ``decides`` is the score the NEW threshold is on."""
    m = row.match
    return {
        "decision": m.decision,
        "is_new": bool(m.is_new),
        "score": float(m.score),
        "threshold": None if m.threshold is None else float(m.threshold),
        "calibrated": bool(m.calibrated),
        "scorer": scorer,
        "decides": decides,
        "candidates": [
            {"individual": c.individual, "score": float(c.score), "image_id": int(c.image_id)}
            for c in m.candidates
        ],
        "screen": row.screen,
        "box": list(row.box) if row.box else None,
    }


def margin_of(result: dict[str, Any]) -> float | None:
    """How far the decision is from flipping: |score - threshold| (None: uncalibrated)."""
    if result["threshold"] is None:
        return None
    return abs(result["score"] - result["threshold"])


class Worker:
    """``num_threads`` threads that identify queued photos until :meth:`stop`."""

    def __init__(self, service: Service, num_threads: int = 1, poll_s: float = 0.2) -> None:
        self.service = service
        self.num_threads = num_threads
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def db(self) -> WebDB:
        return self.service.db

    def start(self) -> None:
        self.db.requeue_interrupted()
        for k in range(self.num_threads):
            t = threading.Thread(target=self._loop, name=f"reid-worker-{k}", daemon=True)
            t.start()
            self._threads.append(t)

    def wake(self) -> None:
        """A new upload is queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def _loop(self) -> None:
        with self.service.open_gallery() as gallery:
            while not self._stop.is_set():
                try:
                    done = self.run_once(gallery)
                except Exception:  # keep serving; the log has the trace, users never see it
                    log.exception("identification batch failed")
                    done = 0
                if not done:
                    self._wake.wait(self.poll_s)
                    self._wake.clear()

    def run_once(self, gallery: Any) -> int:
        """Identify one batch of queued photos; returns how many were taken."""
        claimed = self.db.claim(self.service.settings.batch)
        if not claimed:
            return 0
        try:
            self._identify(gallery, claimed)
        except Exception as exc:  # retry one by one: a bad photo must not sink its batch
            log.warning("batch of %d failed (%s); retrying photo by photo", len(claimed), exc)
            for item in claimed:
                try:
                    self._identify(gallery, [item])
                except Exception:  # the detail goes to the log, never to a public receipt
                    log.exception("photo %s could not be identified", item["id"])
                    self._failed(item)
        return len(claimed)

    def _failed(self, item: dict[str, Any]) -> None:
        """Try a photo again later (the disk may have been full, the gallery locked), waiting
        longer each time; after ``MAX_ATTEMPTS`` it is marked unusable."""
        attempts = int(item.get("attempts") or 0) + 1
        if attempts < MAX_ATTEMPTS:
            self.db.retry_later(item["id"], RETRY_DELAY_S * 4 ** (attempts - 1))
            return
        self.db.finish(item["id"], result=None, reason="identification failed on the server; "
                       "the survey team can look at it")  # fmt: skip

    def _identify(self, gallery: Any, items: list[dict[str, Any]]) -> None:
        from reid.pipeline import MatchOptions, match_photos, resolve_scorer

        svc = self.service
        options = MatchOptions(
            top_k=5, progress=False, detector=svc.detector, best=True,
            screener=svc.screener, scorer=svc.settings.scorer,
        )  # fmt: skip
        options, choice = resolve_scorer(gallery, options)
        paths = [svc.upload_path(i["stored_name"]) for i in items]
        rows = match_photos(gallery, paths, svc.embedder, options)
        by_path: dict[Path, Any] = {r.path: r for r in rows}
        for item, path in zip(items, paths, strict=True):
            row = by_path.get(path)
            if row is None or row.match is None:
                reason = row.error if row is not None else "no result"
                self.db.finish(item["id"], result=None, reason=reason)
                continue
            result = row_result(row, choice.name, choice.decides)
            self.db.finish(item["id"], result=result, vector=row.vector, margin=margin_of(result))
            self._hybrid_alert(item["id"], result)

    def _hybrid_alert(self, photo_id: int, result: dict[str, Any]) -> None:
        from reid.web.alerts import hybrid_alert

        s = self.service.settings
        who = "" if result["is_new"] else result["decision"]
        alert = hybrid_alert(who, result["screen"], s.hybrid_category, s.hybrid_level)
        if alert is not None:
            self.db.add_alert(alert.kind, who, photo_id, alert.message, alert.details)


__all__ = ["Worker", "margin_of", "row_result"]
