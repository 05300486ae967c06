"""Behaviour of the synthetic salamander generator (reid.synthetic.salamanders): small images,
a few seconds."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.synthetic.draw import CONDITIONS, make_pattern, render_head
from reid.synthetic.salamanders import MANIFEST_COLUMNS, synthesize

SIZE = 128


def _luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64).mean(axis=2)


def _ring(mask: np.ndarray, width: int = 3) -> np.ndarray:
    """Pixels within ``width`` of the mask but not on it (mostly the skin around the spots)."""
    grown = np.zeros_like(mask)
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            grown |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return grown & ~mask


def _layout_descriptor(mask: np.ndarray) -> np.ndarray:
    """Histogram of the spot pixels' distances from their centroid, in units of their RMS
    distance: unchanged by rotation, scale and shift, so it compares two photos' spot layouts."""
    ys, xs = np.nonzero(mask)
    r = np.hypot(xs - xs.mean(), ys - ys.mean())
    hist, _ = np.histogram(r / np.sqrt((r**2).mean()), bins=8, range=(0.0, 2.0))
    return hist / hist.sum()


def _read_manifest(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# --- patterns -------------------------------------------------------------------------------


def test_make_pattern_is_deterministic_and_differs_between_individuals():
    a = make_pattern("JGS001", seed=0)
    assert a == make_pattern("JGS001", seed=0)
    assert a.spots != make_pattern("JGS002", seed=0).spots
    assert a.spots != make_pattern("JGS001", seed=1).spots
    assert a.spots != make_pattern("JGS001", seed=0, population="hybrid").spots


def test_native_spots_have_the_specified_count_and_size():
    for i in range(10):
        pattern = make_pattern(f"JGS{i:03d}", seed=3)
        assert 25 <= pattern.num_spots <= 45
        radius = np.sqrt([s.rx * s.ry for s in pattern.spots])  # in head half-widths
        # Radii of 2-7% of the head width (the head is 2 half-widths wide), elongation <= 1.8.
        assert 0.04 * 0.999 <= radius.min() and radius.max() <= 0.14
        xs = np.array([s.x for s in pattern.spots])
        assert np.abs(xs).max() < 1.0  # every spot centre lies across the head


def test_hybrids_have_more_smaller_paler_spots_than_natives():
    natives = [make_pattern(f"N{i}", seed=0) for i in range(20)]
    hybrids = [make_pattern(f"H{i}", seed=0, population="hybrid") for i in range(20)]

    def mean_of(patterns, attr):
        return np.mean([np.mean([getattr(s, attr) for s in p.spots]) for p in patterns])

    assert np.mean([p.num_spots for p in hybrids]) > np.mean([p.num_spots for p in natives]) + 15
    assert mean_of(hybrids, "rx") < mean_of(natives, "rx")
    assert mean_of(hybrids, "darkness") < mean_of(natives, "darkness")


def test_make_pattern_rejects_an_unknown_population():
    with pytest.raises(ValueError, match="population 'wild'.*native, hybrid"):
        make_pattern("JGS001", seed=0, population="wild")


# --- rendering ------------------------------------------------------------------------------


def test_render_head_returns_an_rgb_image_and_a_matching_spot_mask():
    pattern = make_pattern("JGS001", seed=0)
    image, mask = render_head(pattern, np.random.default_rng(0), "morning", size=SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert mask.shape == (SIZE, SIZE) and mask.dtype == bool
    assert 0.03 < mask.mean() < 0.5  # spots cover a real share of the crop, not all of it
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - SIZE / 2) < 0.2 * SIZE and abs(ys.mean() - SIZE / 2) < 0.2 * SIZE


def test_spot_mask_marks_dark_pixels_in_every_condition():
    pattern = make_pattern("JGS007", seed=0)
    for i, condition in enumerate(CONDITIONS * 2):
        image, mask = render_head(pattern, np.random.default_rng(i), condition, size=SIZE)
        lum = _luminance(image)
        # The spots are clearly darker than the skin right around them, even in the evening.
        assert lum[mask].mean() < lum[_ring(mask)].mean() - 5, condition


def test_render_head_rejects_an_unknown_condition():
    with pytest.raises(ValueError, match="'noon'.*morning, afternoon, evening"):
        render_head(make_pattern("JGS001", 0), np.random.default_rng(0), "noon")


def test_each_render_is_a_new_photo_of_the_same_animal():
    patterns = [make_pattern(f"JGS{i:03d}", seed=0) for i in range(6)]
    renders = [
        [
            render_head(p, np.random.default_rng(10 * i + j), c, size=SIZE)
            for j, c in enumerate(CONDITIONS)
        ]
        for i, p in enumerate(patterns)
    ]
    first, second = renders[0][0], renders[0][1]
    assert not np.array_equal(first[0], second[0]) and not np.array_equal(first[1], second[1])

    labels = np.repeat(np.arange(len(patterns)), len(CONDITIONS))
    desc = np.array([_layout_descriptor(mask) for photos in renders for _, mask in photos])
    dist = np.abs(desc[:, None] - desc[None]).sum(axis=2)
    same = labels[:, None] == labels[None]
    np.fill_diagonal(dist, np.inf)
    # Every photo's spot layout is closest to another photo of the same animal ...
    assert (labels[dist.argmin(axis=1)] == labels).all()
    # ... and same-animal photos are far more alike than photos of different animals.
    assert dist[same & np.isfinite(dist)].max() < dist[~same].min()


def test_evening_photos_are_darker_than_afternoon_photos():
    pattern = make_pattern("JGS003", seed=0)

    def mean_brightness(condition):
        rngs = [np.random.default_rng(i) for i in range(5)]
        return np.mean([render_head(pattern, r, condition, size=SIZE)[0].mean() for r in rngs])

    assert mean_brightness("evening") < 0.7 * mean_brightness("afternoon")


# --- synthesize -----------------------------------------------------------------------------


def test_synthesize_writes_images_and_a_manifest(tmp_path):
    manifest = synthesize(tmp_path, 3, 9, size=48, progress=False)
    assert manifest == tmp_path / "manifest.csv"
    columns, rows = _read_manifest(manifest)
    assert tuple(columns) == MANIFEST_COLUMNS
    assert len(rows) == 27 and len(list((tmp_path / "images").rglob("*.jpg"))) == 27
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    for row in rows:
        assert "\\" not in row["path"] and not row["path"].startswith("/")
        assert Image.open(tmp_path / row["path"]).size == (48, 48)
        assert row["sighting"] == f"{row['individual']}_{row['date']}_{row['condition']}"
        assert (row["location"], row["side"], row["population"]) == ("pool-1", "", "native")
        hour = {"morning": 11, "afternoon": 15, "evening": 18}[row["condition"]]
        hh, mm = map(int, row["time"].split(":"))
        assert abs(hh * 60 + mm - hour * 60) <= 30
    # 9 photos over 3 dates x 3 conditions: each animal is seen once in each of the 9 sightings.
    for name in ("JGS001", "JGS002", "JGS003"):
        sightings = [r["sighting"] for r in rows if r["individual"] == name]
        assert len(set(sightings)) == 9
    assert {r["date"] for r in rows} == {"2025-08-20", "2025-08-21", "2025-08-22"}


def test_synthesize_groups_burst_frames_into_sightings(tmp_path):
    _, rows = _read_manifest(synthesize(tmp_path, 1, 5, size=48, num_dates=1,
                                        conditions=("evening",), progress=False))  # fmt: skip
    assert {r["sighting"] for r in rows} == {"JGS001_2025-08-20_evening"}
    assert len({r["time"] for r in rows}) == 1  # one burst, one time
    assert len({r["path"] for r in rows}) == 5


def test_individuals_are_stable_across_calls(tmp_path):
    small = synthesize(tmp_path / "a", 5, 2, size=48, progress=False)
    large = synthesize(tmp_path / "b", 8, 2, size=48, progress=False)
    rows_a = [r for r in _read_manifest(small)[1] if r["individual"] == "JGS005"]
    rows_b = [r for r in _read_manifest(large)[1] if r["individual"] == "JGS005"]
    assert rows_a == rows_b and len(rows_a) == 2
    for row in rows_a:
        assert (tmp_path / "a" / row["path"]).read_bytes() == (
            tmp_path / "b" / row["path"]
        ).read_bytes()


def test_first_index_makes_new_individuals(tmp_path):
    _, rows = _read_manifest(synthesize(tmp_path, 2, 1, size=48, first_index=21, progress=False))
    assert sorted({r["individual"] for r in rows}) == ["JGS021", "JGS022"]


def test_hybrid_fraction_sets_the_population_column(tmp_path):
    _, rows = _read_manifest(
        synthesize(tmp_path, 10, 1, size=48, hybrid_fraction=0.3, progress=False)
    )
    assert sorted(r["population"] for r in rows) == ["hybrid"] * 3 + ["native"] * 7


def test_masks_are_written_when_asked(tmp_path):
    columns, rows = _read_manifest(
        synthesize(tmp_path, 1, 2, size=64, write_masks=True, progress=False)
    )
    assert tuple(columns) == MANIFEST_COLUMNS + ("mask",)
    for row in rows:
        mask = np.asarray(Image.open(tmp_path / row["mask"]))
        assert Path(row["mask"]).stem == Path(row["path"]).stem
        assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_individuals": 0}, "num_individuals"),
        ({"images_per": 0}, "images_per"),
        ({"hybrid_fraction": 1.5}, "hybrid_fraction"),
        ({"start_date": "2025-13-01"}, "start_date"),
        ({"conditions": ("morning", "noon")}, "conditions"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(tmp_path, kwargs, argument):
    args = {"num_individuals": 2, "images_per": 1, "size": 48, "progress": False} | kwargs
    with pytest.raises(ValueError, match=argument):
        synthesize(tmp_path, **args)
    assert not (tmp_path / "manifest.csv").exists()
