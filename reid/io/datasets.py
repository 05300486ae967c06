"""Datasets: which photo shows which individual, when, where and under which light.

A dataset is either a folder with one sub-folder per individual, or a CSV manifest with the
columns ``path,individual`` and optionally ``date,time,condition,location,observer,side,sighting``
plus any extra columns (kept in :attr:`ImageRecord.attrs`, e.g. ``population`` for the
native-vs-hybrid task).
Manifest paths are relative to the manifest's folder unless absolute. An optional ``box`` column
(``x1,y1,x2,y2`` in pixels of the upright photo, quoted) names the region of the photo to use,
e.g. a head cropped by hand or by ``reid detect run``; empty means the whole photo.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from reid.detect.crop import parse_box
from reid.errors import ImageLoadError, ReIDError
from reid.gallery.records import STANDARD_COLUMNS, ImageRecord
from reid.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, try_prepare_image


def read_dataset(path: str | Path) -> list[ImageRecord]:
    """Read a folder-per-individual tree or a CSV manifest; errors name the path and the fix."""
    path = Path(path)
    if not path.exists():
        raise ReIDError(
            f"Dataset {path} does not exist: give a folder with one sub-folder per "
            "individual or a CSV manifest with columns path,individual."
        )
    samples = read_manifest(path) if path.is_file() else read_folder(path)
    if not samples:
        raise ReIDError(
            f"Dataset {path} contains no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    return samples


def read_folder(root: Path) -> list[ImageRecord]:
    """``root/<individual>/**/<image>``; each photo is its own sighting. Hidden files (such as
    macOS ``._*`` companions) are ignored; photos lying directly in ``root`` are an error."""
    manifest = root / "manifest.csv"
    if manifest.is_file():
        return read_manifest(manifest)
    loose = [p for p in root.iterdir() if is_photo(p)]
    if loose:
        raise ReIDError(
            f"{len(loose)} photos lie directly in {root} (e.g. {loose[0].name}): put "
            "them in one sub-folder per individual, or pass --individual ID."
        )
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.rglob("*")):
            if is_photo(file) and not any(
                part.startswith(".") for part in file.relative_to(root).parts
            ):
                samples.append(ImageRecord(path=file, individual=folder.name))
    return samples


def is_photo(path: Path) -> bool:
    """An image file by its suffix, not hidden (macOS ``._*`` companions are not photos)."""
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def read_manifest(manifest: Path) -> list[ImageRecord]:
    """Read a CSV manifest; a row whose file is missing is an error naming the row."""
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, restkey="\x00extra")
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = {"path", "individual"} - set(columns)
            if missing:
                raise ReIDError(
                    f"Manifest {manifest} lacks the column(s) {', '.join(sorted(missing))}: "
                    "its first line must name at least path,individual."
                )
            rows = list(reader)
    except UnicodeDecodeError:
        raise ReIDError(
            f'Manifest {manifest} is not UTF-8 text: save it as "CSV UTF-8" '
            "(Excel: File > Save As > CSV UTF-8)."
        ) from None
    samples = []
    for line, row in enumerate(rows, start=2):
        if "\x00extra" in row:
            raise ReIDError(
                f"Manifest {manifest} line {line} has more fields than the header: "
                'quote values that contain commas, e.g. "Hiroshima, Japan".'
            )
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        samples.append(_sample_from_row(manifest, line, row))
    return samples


def _sample_from_row(manifest: Path, line: int, row: dict[str, str]) -> ImageRecord:
    where = f"Manifest {manifest} line {line}"
    if not row.get("path") or not row.get("individual"):
        raise ReIDError(f"{where} has an empty path or individual: fill both or delete the row.")
    file = Path(row["path"])
    if not file.is_absolute():
        file = manifest.parent / file
    if not file.is_file():
        raise ReIDError(f"{where}: the file {file} does not exist; fix the path or remove the row.")
    extra = {
        k: v for k, v in row.items() if k not in ("path", "individual", "box", *STANDARD_COLUMNS)
    }
    try:
        box = parse_box(row["box"]) if row.get("box") else None
    except ReIDError as exc:
        raise ReIDError(f"{where}: {exc}") from None
    return ImageRecord(
        path=file,
        individual=row["individual"],
        **{c: row.get(c, "") for c in STANDARD_COLUMNS},
        box=box,
        attrs=extra,
    )


@dataclass
class LoadedImages:
    """Decoded, resized photos: ``images[i]`` is (S, S, 3) uint8 for ``samples[i]``."""

    samples: list[ImageRecord]
    images: list[np.ndarray]
    skipped: list[ImageLoadError]

    def summary(self) -> str:
        text = f"{len(self.samples)} images loaded, {len(self.skipped)} skipped"
        return text + "".join(f"\n  skipped {e.path}: {e.reason}" for e in self.skipped)


def load_images(
    samples: Sequence[ImageRecord],
    size: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    num_threads: int = 4,
    on_skip: Callable[[ImageLoadError], None] | None = None,
) -> LoadedImages:
    """Decode and resize every photo once; bad files are reported and skipped, the rest goes on."""

    def work(s: ImageRecord) -> np.ndarray | ImageLoadError:
        return try_prepare_image(s.path, size, box=s.box, max_pixels=max_pixels)

    out = LoadedImages([], [], [])
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:  # decoding releases the GIL
        results = pool.map(work, samples)
        for sample, result in tqdm(
            zip(samples, results, strict=True),
            total=len(samples),
            desc="loading images",
            disable=not progress,
            unit="img",
        ):
            if isinstance(result, ImageLoadError):
                out.skipped.append(result)
                if on_skip:
                    on_skip(result)
            else:
                out.samples.append(sample)
                out.images.append(result)
    return out


def split_by_sighting(
    samples: Sequence[ImageRecord], val_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices (train, val): per individual, about ``val_fraction`` of its sightings go to val.

    All photos of one sighting stay on one side; an individual with a single sighting stays
    wholly in train (it cannot be validated without leaking near-duplicates).
    """
    rng = random.Random(seed)
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, s in enumerate(samples):
        groups[s.individual][s.group].append(i)
    train, val = [], []
    for individual in sorted(groups):
        sightings = sorted(groups[individual])
        rng.shuffle(sightings)
        n_val = round(len(sightings) * val_fraction) if len(sightings) > 1 else 0
        n_val = min(
            max(n_val, 1 if len(sightings) > 1 and val_fraction > 0 else 0), len(sightings) - 1
        )
        for k, g in enumerate(sightings):
            (val if k < n_val else train).extend(groups[individual][g])
    return sorted(train), sorted(val)


def split_category_by_individual(
    samples: Sequence[ImageRecord], labels: Sequence[str], val_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices (train, val) for a category task (e.g. native / hybrid): whole individuals go to
    val, about ``val_fraction`` of those of each category (at least one where a category has
    two or more), so validation measures the screen on animals it never saw."""
    rng = random.Random(seed)
    by_label: dict[str, set[str]] = defaultdict(set)
    for s, label in zip(samples, labels, strict=True):
        by_label[label].add(s.individual)
    val_ids: set[str] = set()
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        rng.shuffle(ids)
        n_val = round(len(ids) * val_fraction) if len(ids) > 1 else 0
        n_val = min(max(n_val, 1 if len(ids) > 1 and val_fraction > 0 else 0), len(ids) - 1)
        val_ids.update(ids[:n_val])
    train = [i for i, s in enumerate(samples) if s.individual not in val_ids]
    val = [i for i, s in enumerate(samples) if s.individual in val_ids]
    return train, val


def split_by_individual(
    samples: Sequence[ImageRecord], test_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices (train, test) with disjoint individuals: for open-set questions."""
    individuals = sorted({s.individual for s in samples})
    rng = random.Random(seed)
    rng.shuffle(individuals)
    n_test = max(1, round(len(individuals) * test_fraction))
    test_ids = set(individuals[:n_test])
    train = [i for i, s in enumerate(samples) if s.individual not in test_ids]
    test = [i for i, s in enumerate(samples) if s.individual in test_ids]
    return train, test
