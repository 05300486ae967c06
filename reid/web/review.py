"""A reviewer's decisions, written into the gallery by its own enroll (with the reviewer's name
in the gallery's audit log), so the command line and the web app see one truth.

confirm: the machine's best candidate is right; assign: another known individual; new: a new
individual (with the other pending photos the reviewer ticks from the proposed group); reject:
not usable, with a reason. Each is refused with one sentence when it cannot apply (the photo was
reviewed already, the individual does not exist, the new name is taken).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from reid.errors import ReIDError
from reid.web.alerts import place_alerts
from reid.web.service import Service

ACTIONS = ("confirm", "assign", "new", "reject")
GROUP_CANDIDATES = 12  # pending NEW photos scored against one photo for its proposed group


class ReviewRefused(ReIDError):
    """A review action that cannot apply; the message says why."""


@dataclass(frozen=True)
class ReviewOutcome:
    action: str
    individual: str
    photo_ids: list[int]
    alerts: list[str]


def location_of(photo: dict[str, Any]) -> str:
    """The place to store with a sighting: the site picked, else ``lat, lon`` as typed/EXIF."""
    if photo["site"]:
        return photo["site"]
    if photo["latitude"] is not None and photo["longitude"] is not None:
        return f"{photo['latitude']:.6f}, {photo['longitude']:.6f}"
    return ""


def proposed_group(service: Service, photo_id: int, gallery: Any) -> tuple[list[int], str]:
    """Other photos awaiting review that the machine also called NEW and that discovery would
    put in one group with this one: (their ids, what scored them). The pairs are scored as
    ``reid discover`` scores them (:func:`reid.discovery.pair_scores`: fused P(same) where the
    gallery is calibrated for it, else the cosine) and cut at the same calibrated threshold;
    only the ``GROUP_CANDIDATES`` nearest by cosine are scored, so a page stays quick."""
    from reid.discovery import pair_scores
    from reid.pipeline import MatchRow

    pending = dict(service.db.pending_new_vectors())
    me = pending.pop(photo_id, None)
    if me is None or not pending:
        return [], ""
    ids = sorted(pending, key=lambda i: -float(pending[i] @ me))[:GROUP_CANDIDATES]
    rows = []
    for i in [photo_id, *ids]:
        p = service.db.photo(i)
        box = (p["result"] or {}).get("box")
        rows.append(MatchRow(service.upload_path(p["stored_name"]), None,
                             box=tuple(box) if box else None, vector=p["vector"]))  # fmt: skip
    try:
        scores, what, threshold = pair_scores(gallery, rows)
    except ReIDError:  # no calibrated threshold to cut at: no proposal
        return [], ""
    return [i for k, i in enumerate(ids, start=1) if scores[0, k] >= threshold], what


def apply_review(
    service: Service, photo_id: int, action: str, user: str, *, individual: str = "",
    reason: str = "", group: list[int] | None = None,
) -> ReviewOutcome:  # fmt: skip
    """Carry out one review action; returns what was done. Raises :class:`ReviewRefused`."""
    if action not in ACTIONS:
        raise ReviewRefused(f"Action {action!r} is not one of {', '.join(ACTIONS)}.")
    with service.review_lock:
        photo = _pending(service, photo_id)
        if action == "reject":
            if not reason.strip():
                raise ReviewRefused("Say why the photo is rejected (e.g. blurred, not the head).")
            service.db.record_review(photo_id, user, "reject", reason=reason.strip())
            return ReviewOutcome("reject", "", [photo_id], [])
        photos = [photo] + [_pending(service, i) for i in (group or []) if i != photo_id]
        with service.open_gallery() as gallery:
            known = {s.id for s in gallery.individuals()}
            name = _target(action, photo, individual.strip(), known)
            _enroll(service, gallery, photos, name, user)
            alerts = _place_alerts(service, gallery, photos, name) if name in known else []
        for p in photos:
            service.db.record_review(p["id"], user, action, individual=name, reason=reason)
        return ReviewOutcome(action, name, [p["id"] for p in photos], alerts)


def edit_individual(service: Service, name: str, action: str, other: str, user: str) -> str:
    """Rename ``name`` to ``other`` or merge it into ``other`` through the gallery (audit log
    under ``user``); the app's own records follow. Returns the individual's id afterwards."""
    from reid.gallery import GalleryError

    other = other.strip()
    if action not in ("rename", "merge") or not other:
        raise ReviewRefused("Say rename or merge, and the other individual's id.")
    with service.review_lock, service.open_gallery() as gallery:
        try:
            (gallery.rename if action == "rename" else gallery.merge)(name, other, user=user)
        except GalleryError as exc:
            raise ReviewRefused(str(exc)) from None
    with service.db.transaction() as conn:  # receipts and alerts name the animal as it is now
        conn.execute("UPDATE photos SET individual = ? WHERE individual = ?", (other, name))
        conn.execute("UPDATE alerts SET individual = ? WHERE individual = ?", (other, name))
    return other


def _pending(service: Service, photo_id: int) -> dict[str, Any]:
    photo = service.db.photo(photo_id)
    if photo is None:
        raise ReviewRefused(f"There is no photo {photo_id}.")
    if photo["status"] != "review":
        raise ReviewRefused(
            f"Photo {photo_id} is not awaiting review (it is {photo['status']}"
            + (f", {photo['action']} by {photo['reviewed_by']}" if photo["reviewed_by"] else "")
            + ")."
        )
    return photo


def _target(action: str, photo: dict[str, Any], individual: str, known: set[str]) -> str:
    from reid.gallery import GalleryError, validate_individual_id

    if action == "confirm":
        result = photo["result"]
        if result["is_new"] or not result["candidates"]:
            raise ReviewRefused(
                "The machine proposed no known individual for this photo: choose one or "
                "record a new individual."
            )
        best = result["candidates"][0]["individual"]
        if best not in known:
            raise ReviewRefused(
                f"{best} is no longer in the gallery (renamed or merged since this photo was "
                "identified): pick the individual it is now."
            )
        return best
    if action == "assign":
        if individual not in known:
            raise ReviewRefused(
                f"Individual {individual!r} is not in the gallery: pick a known individual, "
                "or record a new one."
            )
        return individual
    from reid.pipeline import new_individual_id

    name = individual or new_individual_id()
    try:
        validate_individual_id(name)
    except GalleryError as exc:
        raise ReviewRefused(str(exc)) from None
    if name in known:
        raise ReviewRefused(
            f"Individual {name!r} already exists: choose it as the individual instead, or "
            "give the new one another name."
        )
    return name


def _enroll(service: Service, gallery: Any, photos: list[dict[str, Any]], name: str,
            user: str) -> None:  # fmt: skip
    from reid.gallery import ImageRecord
    from reid.matching.fused import gallery_scorer
    from reid.pipeline import enroll_samples

    local = None
    if gallery.local_fingerprint is not None:
        scorer = gallery_scorer(gallery)
        local = (scorer, gallery.local_scorer_spec or {"name": scorer.name, "settings": {}})
    records = []
    for p in photos:
        sub = service.db.query("SELECT observer FROM submissions WHERE id = ?",
                               (p["submission_id"],))  # fmt: skip
        records.append(ImageRecord(
            path=service.upload_path(p["stored_name"]), individual=name, date=p["date"],
            location=location_of(p), observer=sub[0]["observer"] if sub else "",
            sighting=f"web-{p['submission_id']}",
        ))  # fmt: skip
    outcome = enroll_samples(
        gallery, records, service.embedder, user=user or getpass.getuser(), progress=False,
        detector=service.detector, best=True, local=local,
    )  # fmt: skip
    report = outcome.report
    for d in report.duplicates:  # already there under this individual (e.g. a decision that
        if d.existing_individual != name:  # crashed before it was recorded): nothing to redo
            raise ReviewRefused(f"This photo is already in the gallery as {d.existing_individual}.")
    problems = [f.reason for f in report.failed] + [e.reason for e in outcome.unreadable]
    problems += outcome.no_head + [why for _, why in outcome.bad_ids]
    if problems or len(report.added) + len(report.duplicates) != len(records):
        raise ReviewRefused(f"The gallery did not take the photo: {'; '.join(problems)}.")


def _place_alerts(service: Service, gallery: Any, photos: list[dict[str, Any]],
                  name: str) -> list[str]:  # fmt: skip
    s = service.settings
    mine = {f"web-{p['submission_id']}" for p in photos}
    earlier = [im.location for im in gallery.images(name) if im.sighting not in mine]
    messages = []
    for p in photos:
        for alert in place_alerts(name, location_of(p), earlier, service.sites, s.alert_km):
            service.db.add_alert(alert.kind, name, p["id"], alert.message, alert.details)
            messages.append(alert.message)
    return messages


__all__ = [
    "ACTIONS",
    "ReviewOutcome",
    "ReviewRefused",
    "apply_review",
    "edit_individual",
    "location_of",
    "proposed_group",
]
