"""Alerts a conservation team acts on: a known animal seen where it does not belong (moved by
people, released, or misidentified: either way someone should look), or an animal the screen
calls a likely hybrid.

Distances are great-circle (haversine, mean Earth radius 6371.0088 km): at the scale of a river
survey the error against the ellipsoid is under 0.5 %.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reid.ecology.dwca import coordinates, read_sites
from reid.errors import ReIDError

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Sites:
    """Named survey sites: where each is, and (optionally) the river or catchment it drains to."""

    where: dict[str, tuple[float, float]] = field(default_factory=dict)
    catchment: dict[str, str] = field(default_factory=dict)

    def coordinates(self, location: str) -> tuple[float, float] | None:
        return coordinates(location, self.where)


def read_site_table(path: str | Path | None) -> Sites:
    """A sites CSV ``site,latitude,longitude[,catchment]``; None gives no sites."""
    if path is None:
        return Sites()
    where = read_sites(path)
    with Path(path).open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    catchment = {
        r["site"].strip(): (r.get("catchment") or "").strip()
        for r in rows
        if (r.get("catchment") or "").strip()
    }
    return Sites(where, catchment)


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points in decimal degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


@dataclass(frozen=True)
class Alert:
    kind: str  # distance | catchment | hybrid
    message: str
    details: dict


def place_alerts(
    individual: str,
    location: str,
    earlier: Sequence[str],
    sites: Sites,
    max_km: float,
) -> list[Alert]:
    """Alerts for a confirmed sighting of ``individual`` at ``location`` given the locations of
    its ``earlier`` sightings: farther than ``max_km`` from every earlier one that has a place,
    and/or at a site of another catchment than every earlier site. None when the new sighting
    or all earlier ones lack a place (nothing to compare)."""
    if max_km <= 0:
        raise ReIDError(f"The alert distance must be positive, not {max_km} km.")
    here = sites.coordinates(location)
    out = []
    placed = [(loc, p) for loc in earlier if (p := sites.coordinates(loc)) is not None]
    if here is not None and placed:
        nearest_loc, nearest = min(placed, key=lambda lp: distance_km(here, lp[1]))
        km = distance_km(here, nearest)
        if km > max_km:
            out.append(Alert(
                "distance",
                f"{individual} was confirmed at {location}, {km:.1f} km from its nearest earlier "
                f"sighting ({nearest_loc}); the alert distance is {max_km:g} km.",
                {"distance_km": round(km, 3), "nearest": nearest_loc, "location": location},
            ))  # fmt: skip
    basin = sites.catchment.get(location)
    before = {sites.catchment[loc] for loc in earlier if loc in sites.catchment}
    if basin and before and basin not in before:
        out.append(Alert(
            "catchment",
            f"{individual} was confirmed at {location} in catchment {basin}; it was seen before "
            f"only in {', '.join(sorted(before))}.",
            {"catchment": basin, "earlier": sorted(before), "location": location},
        ))  # fmt: skip
    return out


def hybrid_alert(
    individual: str, screen: dict[str, float] | None, category: str, level: float
) -> Alert | None:
    """An alert when the screen gives ``category`` (e.g. hybrid) a probability >= ``level``."""
    if not screen or category not in screen or screen[category] < level:
        return None
    return Alert(
        "hybrid",
        f"{individual or 'A submitted animal'}: the screen gives {category} probability "
        f"{screen[category]:.2f} (alert level {level:g}).",
        {"probability": round(float(screen[category]), 4), "category": category},
    )


__all__ = [
    "Alert",
    "Sites",
    "distance_km",
    "hybrid_alert",
    "place_alerts",
    "read_site_table",
]
