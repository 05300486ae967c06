"""Pictures a reviewer looks at, drawn on first request and kept under ``<data>/results``:
the match sheet (with verified correspondences where the matching stage has them), the
Grad-CAM overlay against the best candidate, and a map of an individual's sightings.

Drawn on demand rather than by the worker: identification throughput stays that of
``reid match``, and most photos of a clear match are confirmed without opening every picture.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from reid.web.alerts import Sites
from reid.web.service import Service


def match_sheet(service: Service, photo: dict[str, Any]) -> Path:
    """The photo beside its candidates (``<results>/<id>/sheet.png``)."""
    from reid.pipeline import MatchOptions, match_photos, write_match_sheets

    out = service.results_dir / str(photo["id"]) / "sheet.png"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    path = service.upload_path(photo["stored_name"])
    options = MatchOptions(top_k=3, progress=False, detector=service.detector, best=True,
                           scorer=service.settings.scorer)  # fmt: skip
    with service.open_gallery() as gallery:
        rows = match_photos(gallery, [path], service.embedder, options)
        written = write_match_sheets(rows, out.parent / "sheets", gallery)
    if not written:
        raise FileNotFoundError(f"no sheet for photo {photo['id']}")
    written[0].replace(out)
    return out


def browser_copy(source: Path, out: Path) -> Path:
    """``source`` when a browser can show it, else (HEIC) an upright JPEG copy at ``out``,
    made once; the photo itself stays as it was sent."""
    from reid.io.images import load_image

    if source.suffix.lower() not in (".heic", ".heif"):
        return source
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        load_image(source).save(tmp, "JPEG", quality=90)
        tmp.replace(out)
    return out


def gradcam_overlay(service: Service, photo: dict[str, Any]) -> Path:
    """What drove the similarity between the photo and its best candidate's best photo."""
    from reid.explain.gradcam import plot_match_explanation

    out = service.results_dir / str(photo["id"]) / "gradcam.png"
    if out.exists():
        return out
    result = photo["result"] or {}
    if not result.get("candidates"):
        raise FileNotFoundError(f"photo {photo['id']} has no candidate to explain")
    best = result["candidates"][0]
    with service.open_gallery() as gallery:
        image = gallery.image(best["image_id"])
    if image is None:
        raise FileNotFoundError(f"gallery photo {best['image_id']} is gone")
    explainer = service.explainer()
    box = tuple(result["box"]) if result.get("box") else None
    query_path = service.upload_path(photo["stored_name"])
    pair = explainer.explain_match(
        explainer.prepare(query_path, box), explainer.prepare(image.path, image.box),
        best["individual"],
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    return plot_match_explanation(query_path, image.path, pair, out, query_box=box,
                                  gallery_box=image.box)  # fmt: skip


def sightings_map(individual: str, sightings: list[tuple[str, str]], sites: Sites) -> bytes | None:
    """PNG bytes: a scatter of an individual's sighting places ``(date, location)``, joined in
    date order and labelled with their dates; None when no sighting has a place."""
    from matplotlib.ticker import MaxNLocator

    from reid.evaluation.plots import plt

    placed = [(d, p) for d, loc in sorted(sightings) if (p := sites.coordinates(loc))]
    if not placed:
        return None
    lats = [p[0] for _, p in placed]
    lons = [p[1] for _, p in placed]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(lons, lats, "-", color="0.7", zorder=1)
    ax.scatter(lons, lats, c=range(len(placed)), cmap="viridis", zorder=2, s=40)
    for date, (lat, lon) in placed:
        ax.annotate(date or "?", (lon, lat), fontsize=7, xytext=(3, 3), textcoords="offset points")
    pad = 0.01  # degrees (~1 km): a single sighting, or a few metres apart, stays readable
    for lim, values in ((ax.set_xlim, lons), (ax.set_ylim, lats)):
        mid, half = (max(values) + min(values)) / 2, (max(values) - min(values)) / 2
        lim(mid - max(half * 1.2, pad), mid + max(half * 1.2, pad))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"{individual}: {len(placed)} placed sighting(s)")
    ax.ticklabel_format(useOffset=False)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


__all__ = ["browser_copy", "gradcam_overlay", "match_sheet", "sightings_map"]
