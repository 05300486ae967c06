"""Synthetic salamander data sets for tests, demos and benchmarks.

:func:`synthesize` writes photos of individuals drawn by :mod:`reid.synthetic.draw` over several
dates and times of day, with the manifest the rest of the toolkit reads (and, optionally, the
exact spot mask of every photo). Each individual, and each of its photos, depends only on its
name, the seed and its number, so the same call writes the same data set.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image
from tqdm import tqdm

from reid.synthetic.draw import (
    CONDITIONS,
    SpotPattern,
    SynthArgumentError,
    check_condition,
    make_pattern,
    render_head,
    stable_seed,
)

# fmt: off
MANIFEST_COLUMNS = ("path", "individual", "date", "time", "condition", "location", "side",
                    "sighting", "population")
# fmt: on
_CONDITION_HOUR = {"morning": 11, "afternoon": 15, "evening": 18}
_MINIMUM = {"size": 32, "first_index": 0}  # other counts must be at least 1


def _fail(message: str) -> NoReturn:
    raise SynthArgumentError(message)


def _check_synth_args(counts: dict[str, int], conditions: Sequence[str], hybrid_fraction: float,
                      id_prefix: str, start_date: str) -> dt.date:  # fmt: skip
    """Validate synthesize's arguments (one sentence per problem); return the parsed start date."""
    for name, value in counts.items():
        low = _MINIMUM.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            _fail(f"{name} must be an integer of at least {low}, got {value!r}.")
    if not 0.0 <= hybrid_fraction <= 1.0:
        _fail(f"hybrid_fraction must be between 0 and 1, got {hybrid_fraction!r}.")
    if isinstance(conditions, str) or not conditions or len(set(conditions)) != len(conditions):
        _fail(f"conditions must be a non-empty list of distinct names, got {conditions!r}.")
    for condition in conditions:
        check_condition(condition, "conditions entry")
    if "/" in id_prefix or "\\" in id_prefix:
        _fail(f"id_prefix must not contain a path separator, got {id_prefix!r}.")
    try:
        return dt.date.fromisoformat(start_date)
    except (TypeError, ValueError):
        _fail(f"start_date must be a date written YYYY-MM-DD, got {start_date!r}.")


def _population_of(index: int, seed: int, hybrid_fraction: float) -> str:
    # A Sturmian sequence over the index: any run of n consecutive individuals holds floor or
    # ceil of n * hybrid_fraction hybrids, and each individual's population depends only on
    # (index, seed, hybrid_fraction), so it does not change with num_individuals.
    offset = np.random.default_rng(stable_seed("population", seed)).random()
    before = math.floor(index * hybrid_fraction + offset)
    return "hybrid" if math.floor((index + 1) * hybrid_fraction + offset) > before else "native"


def plan_shots(
    index: int, images_per: int, dates: list[str], conditions: Sequence[str]
) -> list[tuple[int, str, str, int]]:
    """(photo number k, date, condition, frame number within the sighting) for one individual."""
    shots, frames = [], {}
    for k in range(images_per):
        # Slot j -> (date j % D, condition (date + j // D) % C): any D * C consecutive slots hit
        # every (date, condition) once, so photos spread evenly; offsetting by the index
        # spreads the leftover photos of different individuals over different slots.
        j = k + index
        date_i = j % len(dates)
        key = (dates[date_i], conditions[(date_i + j // len(dates)) % len(conditions)])
        frames[key] = frames.get(key, -1) + 1
        shots.append((k, *key, frames[key]))
    return sorted(shots, key=lambda s: (s[1], conditions.index(s[2]), s[3]))  # manifest order


def _sighting_time(seed: int, individual: str, date: str, condition: str) -> str:
    """HH:MM within 25 minutes of the condition's nominal hour, fixed per sighting."""
    rng = np.random.default_rng(stable_seed("time", seed, individual, date, condition))
    minutes = _CONDITION_HOUR[condition] * 60 + int(rng.integers(-25, 26))
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def write_csv_atomically(path: Path, header: Sequence[str], rows: list[list[str]]) -> None:
    """Write a CSV (header + rows) so that readers see the old file or the complete new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)  # atomic: readers see the old manifest or the complete new one
    finally:
        tmp.unlink(missing_ok=True)


def _write_photo(out_dir: Path, pattern: SpotPattern, shot: tuple[int, str, str, int], seed: int,
                 size: int, write_masks: bool) -> list[str]:  # fmt: skip
    """Render photo ``shot`` of ``pattern``, write it (and its mask) and return its manifest row."""
    k, date, condition, frame = shot
    name = pattern.individual
    stem, sighting = f"{name}_{date}_{condition}_{frame}", f"{name}_{date}_{condition}"
    rng = np.random.default_rng(stable_seed("photo", name, seed, pattern.population, k))
    image, mask = render_head(pattern, rng, condition, size)
    rel = f"images/{name}/{stem}.jpg"
    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out_dir / rel, quality=92)
    time = _sighting_time(seed, name, date, condition)
    row = [rel, name, date, time, condition, "pool-1", "", sighting, pattern.population]
    if write_masks:
        row.append(f"masks/{name}/{stem}.png")
        (out_dir / row[-1]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / row[-1])
    return row


def synthesize(out_dir: Path, num_individuals: int, images_per: int, *, seed: int = 0,
               size: int = 192, num_dates: int = 3, conditions: Sequence[str] = CONDITIONS,
               hybrid_fraction: float = 0.0, first_index: int = 1, id_prefix: str = "JGS",
               start_date: str = "2025-08-20", write_masks: bool = False,
               progress: bool = True) -> Path:  # fmt: skip
    """Write a synthetic data set and return the path of its manifest.csv.

    Images go to out_dir/images/<id>/<id>_<date>_<condition>_<frame>.jpg (RGB, size x size,
    JPEG quality 92; <frame> counts from 0 within the sighting), masks (with ``write_masks``)
    to out_dir/masks/<id>/<same stem>.png (8-bit L, 255 on spots). An individual's population
    depends on (index, seed, hybrid_fraction), its pattern on (name, seed, population) and its
    k-th photo on that and k, so it is the same animal with the same photos in every call.
    An existing manifest.csv in out_dir is replaced.
    """
    counts = {"num_individuals": num_individuals, "images_per": images_per,
              "num_dates": num_dates, "size": size, "first_index": first_index}  # fmt: skip
    start = _check_synth_args(counts, conditions, hybrid_fraction, id_prefix, start_date)
    out_dir = Path(out_dir)
    dates = [(start + dt.timedelta(days=d)).isoformat() for d in range(num_dates)]
    rows: list[list[str]] = []
    with tqdm(total=num_individuals * images_per, desc="synthesizing", unit="img",
              disable=not progress) as bar:  # fmt: skip
        for index in range(first_index, first_index + num_individuals):
            population = _population_of(index, seed, hybrid_fraction)
            pattern = make_pattern(f"{id_prefix}{index:03d}", seed, population)
            for shot in plan_shots(index, images_per, dates, conditions):
                rows.append(_write_photo(out_dir, pattern, shot, seed, size, write_masks))
                bar.update()
    header = list(MANIFEST_COLUMNS) + (["mask"] if write_masks else [])
    manifest = out_dir / "manifest.csv"
    write_csv_atomically(manifest, header, rows)
    return manifest
