"""From a gallery's sightings (individual, date, place) to capture histories.

An occasion is a calendar day, ISO week or month of the sighting's date, or a survey session
from a file (``session,start,end[,site]``: a sighting belongs to the session whose dates hold
it, at its site where one is given). With a sessions file every session is an occasion, even
one in which nothing was seen: only the survey plan knows that sampling took place. With
calendar occasions only periods with at least one sighting appear, so a survey without its
session file cannot show its empty occasions (say so in a report).

Sightings without a usable date, or outside every session, are listed and left out.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from reid.ecology.histories import CaptureHistories
from reid.errors import ReIDError

CALENDAR = ("day", "week", "month")


@dataclass(frozen=True)
class Sighting:
    """One photo's record: who, when (ISO date, may be empty), where, and its photo."""

    individual: str
    date: str
    location: str = ""
    photo: str = ""


@dataclass(frozen=True)
class Session:
    name: str
    start: date
    end: date
    site: str = ""


@dataclass(frozen=True)
class LeftOut:
    """A sighting that is in no occasion, and why."""

    sighting: Sighting
    reason: str


def parse_date(text: str) -> date | None:
    """An ISO date (``2025-06-01``, also with a time after it), else None."""
    text = (text or "").strip()
    if len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def read_sessions(path: str | Path) -> list[Session]:
    """A survey-session CSV ``session,start,end[,site]`` (ISO dates, end inclusive). Sessions
    of one site (or sessions without a site) must not overlap: a sighting would belong to
    two occasions."""
    path = Path(path)
    if not path.is_file():
        raise ReIDError(f"{path}: no such survey-session file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    need = {"session", "start", "end"}
    if not rows or not need <= {c.strip().lower() for c in rows[0]}:
        raise ReIDError(
            f"{path}: a survey-session file needs the columns session, start, end "
            "(and optionally site), one row per session"
        )
    sessions = []
    for i, row in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        start, end = parse_date(row["start"]), parse_date(row["end"])
        if start is None or end is None:
            bad = "start" if start is None else "end"
            raise ReIDError(
                f"{path}: row {i} ({row['session']}): {bad} {row[bad]!r} is not an "
                "ISO date such as 2025-06-01"
            )
        if end < start:
            raise ReIDError(
                f"{path}: row {i} ({row['session']}): end {end} is before start {start}"
            )
        sessions.append(
            Session(row["session"] or f"session {i - 1}", start, end, row.get("site", ""))
        )
    for a in range(len(sessions)):
        for b in range(a + 1, len(sessions)):
            s, t = sessions[a], sessions[b]
            same_place = not s.site or not t.site or s.site == t.site
            if same_place and s.start <= t.end and t.start <= s.end:
                raise ReIDError(
                    f"{path}: sessions {s.name!r} (row {a + 2}, {s.start}..{s.end}) "
                    f"and {t.name!r} (row {b + 2}, {t.start}..{t.end}) overlap"
                    f"{' at ' + (s.site or t.site) if (s.site or t.site) else ''}; "
                    "a sighting would fall in both"
                )
    return sessions


def _calendar_label(day: date, kind: str) -> str:
    if kind == "day":
        return day.isoformat()
    if kind == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def assign_occasions(
    sightings: Sequence[Sighting], occasion: str
) -> tuple[list[str | None], list[str], list[LeftOut]]:
    """Each sighting's occasion label (None: left out), the occasion labels in time order, and
    the sightings left out with why. ``occasion``: day, week, month or a session-file path."""
    left: list[LeftOut] = []
    of: list[str | None] = []
    days = [parse_date(s.date) for s in sightings]
    for s, day in zip(sightings, days, strict=True):
        if day is None:
            left.append(LeftOut(s, f"no usable date ({s.date!r})" if s.date else "no date"))
    if occasion in CALENDAR:
        keys: dict[str, date] = {}
        for day in days:
            if day is None:
                of.append(None)
                continue
            label = _calendar_label(day, occasion)
            keys[label] = min(keys.get(label, day), day)
            of.append(label)
        return of, sorted(keys, key=lambda k: keys[k]), left
    sessions = read_sessions(occasion)
    labels = [x.name for x in sorted(sessions, key=lambda x: x.start)]
    if len(set(labels)) != len(labels):
        raise ReIDError(f"{occasion}: session names repeat; give each session its own name")
    for s, day in zip(sightings, days, strict=True):
        if day is None:
            of.append(None)
            continue
        hit = [
            x for x in sessions if x.start <= day <= x.end and (not x.site or x.site == s.location)
        ]
        if not hit:
            left.append(LeftOut(s, f"{day} at {s.location or 'no site'} is in no session"))
        of.append(hit[0].name if hit else None)
    return of, labels, left


def build_histories(
    sightings: Sequence[Sighting],
    occasion: str,
    *,
    group_of: dict[str, str] | None = None,
    group_name: str = "",
) -> tuple[CaptureHistories, list[LeftOut]]:
    """Capture histories from ``sightings``: ``occasion`` is day, week, month or the path of
    a survey-session CSV. ``group_of`` maps an individual to its group (site, screen category);
    individuals without one get "". Returns the histories (individuals sorted by name,
    occasions in time order) and the sightings left out, with why."""
    of, labels, left = assign_occasions(sightings, occasion)
    seen: dict[str, set[str]] = {}
    for s, label in zip(sightings, of, strict=True):
        if label is not None:
            seen.setdefault(s.individual, set()).add(label)
    ids = sorted(seen)
    column = {label: j for j, label in enumerate(labels)}
    matrix = np.zeros((len(ids), len(labels)), np.uint8)
    for i, ind in enumerate(ids):
        matrix[i, [column[label] for label in seen[ind]]] = 1
    groups = [(group_of or {}).get(i, "") for i in ids] if group_of else []
    return CaptureHistories(matrix, ids, labels, groups, group_name), left


def sightings_of_gallery(gallery_dir: str | Path) -> list[Sighting]:
    """Every enrolled photo of a gallery as a sighting; where the gallery holds no date for a
    photo, the photo's own EXIF date (DateTimeOriginal, else DateTime) is used."""
    from reid.gallery import Gallery

    with Gallery.open(gallery_dir) as g:
        images = g.images()
    return [
        Sighting(im.individual, im.date or exif_date(im.path), im.location, im.source_path)
        for im in images
    ]


def exif_date(path: str | Path) -> str:
    """The ISO date a photo's EXIF gives (``2025:06:01 21:14:03`` -> ``2025-06-01``), or ""."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            exif = img.getexif()
            value = exif.get_ifd(0x8769).get(36867) or exif.get(306)  # DateTimeOriginal, DateTime
    except Exception:  # unreadable or no EXIF: the photo simply has no date
        return ""
    text = str(value or "").strip()
    return text[:10].replace(":", "-") if parse_date(text[:10].replace(":", "-")) else ""


def read_groups(path: str | Path) -> tuple[dict[str, str], str]:
    """A CSV mapping individuals to a group: ``individual,<group column>`` (e.g. each
    individual's native/hybrid category, or a hand-made ``individual,site``)."""
    path = Path(path)
    if not path.is_file():
        raise ReIDError(f"{path}: no such group file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c for c in (reader.fieldnames or []) if c]
        rows = list(reader)
    if "individual" not in columns or len(columns) < 2:
        raise ReIDError(f"{path}: a group file needs an 'individual' column and a group column")
    group = next(c for c in columns if c != "individual")
    return {r["individual"].strip(): (r.get(group) or "").strip() for r in rows}, group
