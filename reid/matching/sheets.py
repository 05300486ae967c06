"""Match sheets: one PNG per query, the photo beside its candidates, for a person to confirm.

With a local re-ranker (``reid match --scorer fused|sift|xfeat``) each candidate gets a panel of
its own: the query region beside the candidate photo's region, lines joining the verified
correspondences, and a caption with the fused probability and each scorer's calibrated one. The
keypoints are pixels of each side's resized region (``Evidence.query_size``, the box cut out of
the upright photo and resized to the scorer's ``max_side``), so they are scaled to the region
as drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from reid.gallery import Candidate, Gallery, Match
    from reid.matching.rerank import Evidence
    from reid.pipeline import MatchRow

PANEL_HEIGHT = 320  # pixels of each region as drawn
MAX_LINES = 80  # correspondences drawn per panel (evenly subsampled beyond)


def write_match_sheets(
    rows: Sequence[MatchRow], sheet_dir: str | Path, gallery: Gallery
) -> list[Path]:
    """Write a sheet for every row that has a match (rows with an error get none).

    Each sheet shows the query cut to the region identified beside its candidates' best gallery
    photos, cut to their stored crop boxes, with scores and the decision; with a local
    re-ranker's evidence (``row.evidence``), the verified correspondences too. Files are
    ``NNNN_<photo stem>[_headK].png`` in row order, so sheets sort as the rows were printed.
    ``gallery`` must be open (its crop boxes are read). Returns the paths written.
    """
    from reid.evaluation.plots import plot_match_sheet

    sheet_dir = Path(sheet_dir)
    sheet_dir.mkdir(parents=True, exist_ok=True)
    boxes = {im.image_id: im.box for im in gallery.images()}
    written = []
    for k, row in enumerate(rows):
        if row.match is None:
            continue
        name = row.path.stem + (f"_head{row.head}" if row.heads > 1 else "")
        path = sheet_dir / f"{k:04d}_{name}.png"
        if row.evidence:
            written.append(plot_correspondence_sheet(row, path, boxes))
            continue
        written.append(
            plot_match_sheet(
                row.path, row.match, path, query_box=row.box, boxes=boxes, label=row.label
            )
        )
    return written


def plot_correspondence_sheet(
    row: MatchRow, path: Path, boxes: dict[int, tuple[int, int, int, int] | None]
) -> Path:
    """One panel per candidate (query region | candidate region, correspondence lines),
    decision in the title; drawn on a plain matplotlib Figure (no pyplot state)."""
    from matplotlib.figure import Figure

    from reid.matching.local import prepare_region

    match: Match = row.match  # type: ignore[assignment]
    cands = list(match.candidates)
    query = prepare_region(row.path, row.box, PANEL_HEIGHT * 2)
    fig = Figure(figsize=(8.0, 3.4 * max(1, len(cands)) + 0.6))
    axes = np.atleast_1d(fig.subplots(max(1, len(cands)), 1))
    for ax, cand in zip(axes, cands, strict=False):
        evidence = (row.evidence or {}).get(cand.image_id)
        _draw_panel(ax, query, cand, evidence, boxes.get(cand.image_id), match.decision)
    for ax in axes:
        ax.axis("off")
    threshold = f"{match.threshold:.3f}" if match.threshold is not None else "uncalibrated"
    fig.suptitle(
        f"{row.label}: {match.decision}  (P(same) {match.score:.3f}, threshold {threshold})",
        fontsize=11,
        color="darkred" if match.is_new else "black",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    return path


def _draw_panel(ax, query: np.ndarray, cand: Candidate, evidence: Evidence | None,
                box: tuple[int, int, int, int] | None, decision: str) -> None:  # fmt: skip
    """Query | candidate side by side at one height, correspondence lines, caption."""
    from matplotlib.collections import LineCollection

    from reid.matching.local import prepare_region

    q = _to_height(query, PANEL_HEIGHT)
    try:
        c = _to_height(prepare_region(cand.image_path, box, PANEL_HEIGHT * 2), PANEL_HEIGHT)
    except Exception:  # a missing gallery photo must not stop the sheet
        c = np.full((PANEL_HEIGHT, PANEL_HEIGHT, 3), 220, np.uint8)
    gap = 12
    canvas = np.full((PANEL_HEIGHT, q.shape[1] + gap + c.shape[1], 3), 255, np.uint8)
    canvas[:, : q.shape[1]] = q
    canvas[:, q.shape[1] + gap :] = c
    ax.imshow(canvas)
    caption = f"{cand.individual}  score {cand.score:.3f}"
    if evidence is not None and len(evidence.query_xy):
        qxy = _scaled(evidence.query_xy, evidence.query_size, q.shape)
        cxy = _scaled(evidence.candidate_xy, evidence.candidate_size, c.shape)
        cxy[:, 0] += q.shape[1] + gap
        pick = np.linspace(0, len(qxy) - 1, min(len(qxy), MAX_LINES)).round().astype(int)
        segments = np.stack([qxy[pick], cxy[pick]], axis=1)
        ax.add_collection(LineCollection(segments, colors="lime", linewidths=0.7, alpha=0.8))
        ax.scatter(segments[:, :, 0].ravel(), segments[:, :, 1].ravel(), s=4, c="yellow")
    if evidence is not None:
        p = evidence.probabilities
        parts = [f"{k} {v:.2f}" for k, v in p.items() if k != "fused"]
        caption += (
            f"\nfused P(same) {p.get('fused', float('nan')):.3f}  ({', '.join(parts)}; "
            f"{len(evidence.query_xy)} verified correspondences)"
        )
    chosen = cand.individual == decision
    ax.set_title(caption, fontsize=9, color="green" if chosen else "black",
                 fontweight="bold" if chosen else None)  # fmt: skip


def _to_height(image: np.ndarray, height: int) -> np.ndarray:
    """(H, W, 3) uint8 resized to ``height`` rows, aspect kept."""
    from PIL import Image

    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _scaled(xy: np.ndarray, size: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """(M, 2) pixels of a region of ``size`` (width, height) -> pixels of it drawn at
    ``shape`` (H, W, ...); both are the same box, so the map is a per-axis scale."""
    out = np.asarray(xy, np.float64).copy()
    out[:, 0] *= shape[1] / max(size[0], 1)
    out[:, 1] *= shape[0] / max(size[1], 1)
    return out


__all__ = ["plot_correspondence_sheet", "write_match_sheets"]
