"""Match sheets: one PNG per query, the photo beside its candidates, for a person to confirm."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reid.gallery import Gallery
    from reid.pipeline import MatchRow


def write_match_sheets(
    rows: Sequence[MatchRow], sheet_dir: str | Path, gallery: Gallery
) -> list[Path]:
    """Write a sheet for every row that has a match (rows with an error get none).

    Each sheet shows the query cut to the region identified beside its candidates' best gallery
    photos, cut to their stored crop boxes, with scores and the decision. Files are
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
        written.append(
            plot_match_sheet(
                row.path,
                row.match,
                sheet_dir / f"{k:04d}_{name}.png",
                query_box=row.box,
                boxes=boxes,
                label=row.label,
            )
        )
    return written


__all__ = ["write_match_sheets"]
