"""Cutting heads out of photos into a folder: one JPEG per head by the crop rule, a
``detections.csv`` that lists every photo (its heads, or why it has none) and, optionally, each
photo with its boxes drawn. What ``reid detect run`` writes."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from reid.detect.detector import NO_HEAD, Detection, HeadDetector
from reid.errors import ImageLoadError
from reid.io.images import load_image

DETECTIONS_FILE = "detections.csv"
DETECTIONS_COLUMNS = (
    "path", "photo", "head", "heads", "confidence", "x1", "y1", "x2", "y2", "box", "note",
)  # fmt: skip


@dataclass
class HeadCrops:
    """What :func:`cut_heads` wrote."""

    table: Path  # detections.csv
    num_photos: int
    num_crops: int
    problems: list[str] = field(default_factory=list)  # "photo: why", one per photo without head

    def summary(self) -> str:
        missing = len(self.problems)
        return (
            f"{self.num_crops} head crops from {self.num_photos - missing} of {self.num_photos} "
            f"photos in {self.table.parent}; {missing} without a head; list: {self.table}"
        )


def cut_heads(
    detector: HeadDetector,
    photos: Sequence[Path],
    out_dir: str | Path,
    *,
    best: bool = False,
    overlay: bool = False,
    progress: bool = True,
) -> HeadCrops:
    """Write each detected head of ``photos`` as ``out_dir/STEM.jpg`` (``STEM_headK.jpg`` when a
    photo holds several; only the most confident with ``best``) and list them all in
    ``out_dir/detections.csv``; with ``overlay``, also ``out_dir/overlays/STEM.png``. A photo
    without a head, or that cannot be read, gets a row saying why and the rest goes on."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    found = detector.detect_paths(photos, progress=progress)
    rows: list[list] = []
    names: set[str] = set()
    out = HeadCrops(out_dir / DETECTIONS_FILE, len(photos), 0)
    for photo, heads in zip(photos, found, strict=True):
        if isinstance(heads, ImageLoadError) or not heads:
            why = heads.reason if isinstance(heads, ImageLoadError) else NO_HEAD
            out.problems.append(f"{photo}: {why}")
            rows.append(["", str(photo), "", 0, "", "", "", "", "", "", why])
            continue
        heads = heads[:1] if best else heads
        img = load_image(photo)
        stem = _unique(photo.stem, names)
        for k, d in enumerate(heads, start=1):
            name = f"{stem}_head{k}.jpg" if len(heads) > 1 else f"{stem}.jpg"
            _save_atomically(img.crop(d.crop), out_dir / name, "JPEG", quality=95)
            out.num_crops += 1
            rows.append(
                [name, str(photo), k, len(heads), f"{d.confidence:.4f}", *d.box,
                 ",".join(map(str, d.crop)), ""]
            )  # fmt: skip
        if overlay:
            _draw_overlay(img, heads, out_dir / "overlays" / f"{stem}.png")
    _write_table(out.table, rows)
    return out


def _write_table(path: Path, rows: list[list]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(DETECTIONS_COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, path)


def _unique(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3`` ... when two photos in different folders share it."""
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


def _save_atomically(img: Image.Image, path: Path, fmt: str, **options) -> None:
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format=fmt, **options)
    os.replace(tmp, path)


def _draw_overlay(img: Image.Image, heads: Sequence[Detection], path: Path) -> None:
    """The photo with each head's box (red) and crop region (yellow), numbered by confidence."""
    from PIL import ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = img.copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(img.size) / 300))
    for k, d in enumerate(heads, start=1):
        draw.rectangle(d.crop, outline=(255, 220, 0), width=max(1, width // 2))
        draw.rectangle(d.box, outline=(255, 0, 0), width=width)
        draw.text((d.box[0] + 3, d.box[1] + 2), f"#{k} {d.confidence:.2f}", fill=(255, 0, 0))
    _save_atomically(canvas, path, "PNG")
