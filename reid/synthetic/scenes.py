"""Synthetic field scenes: salamander heads in larger underwater-looking pictures, with labels.

Field photos are whole scenes: a head somewhere in murky water among rocks, sticks and glare, at any
scale, sometimes partly hidden. This module pastes heads drawn by :mod:`reid.synthetic.draw`
(the same individuals, the same spot patterns) into such scenes and writes what a detector trains
on, in the YOLO format labelImg writes:

    out_dir/images/{train,val}/<stem>.jpg      the scenes
    out_dir/labels/{train,val}/<stem>.txt      one line per head: ``0 cx cy w h`` (0-1)
    out_dir/data.yaml                          the dataset file for ``reid detect train``
    out_dir/scenes.csv                         one row per head (or per empty scene): the
                                               individual, date, condition and its box in pixels

A head's box is the bounding box of the head (snout to the crease at the neck, not the body),
clipped to the scene. About ``empty_fraction`` of the scenes hold no head (for the "no head
found" path); about ``second_head_fraction`` hold a second animal. Scenes are split into train
and val at random (seeded), whole scenes at a time.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm

from reid.errors import ReIDError
from reid.synthetic.draw import CONDITIONS, make_pattern, render_layers, stable_seed
from reid.synthetic.salamanders import plan_shots, write_csv_atomically

SCENE_COLUMNS = ("path", "split", "individual", "date", "condition", "x1", "y1", "x2", "y2")
# how the light of each time of day tints the whole scene (the head carries its own light)
_SCENE_GAIN = {"morning": (1.0, 1.0, 1.0), "afternoon": (1.08, 1.06, 1.0),
               "evening": (0.62, 0.55, 0.5)}  # fmt: skip


@dataclass(frozen=True)
class SceneHead:
    """One head placed in a scene: who, and its box (x1, y1, x2, y2) in scene pixels."""

    individual: str
    date: str
    condition: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class SceneLayout:
    """How scenes look: ``width`` x ``height`` pixels; heads at a side of ``head_scale`` times the
    scene's shorter side; about ``empty_fraction`` of the scenes without a head and
    ``second_head_fraction`` with a second animal; ``val_fraction`` of the scenes for validation.
    """

    width: int = 640
    height: int = 480
    empty_fraction: float = 0.1
    second_head_fraction: float = 0.1
    val_fraction: float = 0.2
    head_scale: tuple[float, float] = (0.2, 0.55)


def synthesize_scenes(
    out_dir: str | Path,
    num_individuals: int,
    scenes_per: int,
    layout: SceneLayout | None = None,
    *,
    seed: int = 0,
    num_dates: int = 3,
    first_index: int = 1,
    progress: bool = True,
) -> Path:
    """Write ``num_individuals * scenes_per`` scenes (plus the empty ones) and return data.yaml.

    Scene j of individual i shows the photo the head generator would give for its j-th shot (same
    date and light as :func:`reid.synthetic.salamanders.synthesize`), pasted into a scene laid out
    by ``layout`` (default :class:`SceneLayout`). JPEG quality 90.
    """
    look = layout or SceneLayout()
    width, height = look.width, look.height
    if num_individuals < 1 or scenes_per < 1 or min(width, height) < 128:
        raise ReIDError(
            "synthesize_scenes needs at least 1 individual, 1 scene each and scenes of at "
            f"least 128 px (got {num_individuals}, {scenes_per}, {width}x{height})."
        )
    out_dir = Path(out_dir)
    rng = np.random.default_rng(stable_seed("scenes", seed))
    start = np.datetime64("2025-08-20")
    dates = [str(start + d) for d in range(num_dates)]
    patterns = {i: make_pattern(f"JGS{i:03d}", seed) for i in
                range(first_index, first_index + num_individuals)}  # fmt: skip
    jobs = [(i, shot) for i in patterns for shot in plan_shots(i, scenes_per, dates, CONDITIONS)]
    jobs += [(None, None)] * int(round(look.empty_fraction * len(jobs)))
    order = rng.permutation(len(jobs))
    rows: list[list[str]] = []
    for n, j in enumerate(tqdm(order, desc="scenes", unit="scene", disable=not progress)):
        index, shot = jobs[j]
        split = "val" if rng.random() < look.val_fraction else "train"
        stem = f"scene{n:05d}"
        heads = []
        if index is not None:
            heads.append((patterns[index], shot))
            if rng.random() < look.second_head_fraction and len(patterns) > 1:
                other = int(rng.choice([i for i in patterns if i != index]))
                heads.append((patterns[other], (10_000 + n, shot[1], shot[2], 0)))
        image, placed = _render_scene(rng, width, height, heads, seed, look.head_scale)
        _write_scene(out_dir, split, stem, image, placed, width, height)
        rel = f"images/{split}/{stem}.jpg"
        rows += [[rel, split, h.individual, h.date, h.condition, *map(str, h.box)]
                 for h in placed] or [[rel, split, "", "", "", "", "", "", ""]]  # fmt: skip
    write_csv_atomically(out_dir / "scenes.csv", SCENE_COLUMNS, rows)
    data = out_dir / "data.yaml"
    text = yaml.safe_dump({"path": str(out_dir.resolve()), "train": "images/train",
                           "val": "images/val", "names": {0: "head"}}, sort_keys=False)  # fmt: skip
    data.write_text(text)
    return data


def _render_scene(rng, width, height, heads, seed, head_scale):
    scene = _water(rng, width, height)
    scene = _clutter(rng, scene, int(rng.integers(3, 10)))
    placed: list[SceneHead] = []
    for pattern, (k, date, condition, _frame) in heads:
        side = int(rng.uniform(*head_scale) * min(width, height))
        head_rng = np.random.default_rng(stable_seed("photo", pattern.individual, seed,
                                                  pattern.population, k))  # fmt: skip
        layers = render_layers(pattern, head_rng, condition, max(side, 32))
        x0 = int(rng.integers(-side // 8, width - side + side // 8 + 1))
        y0 = int(rng.integers(-side // 8, height - side + side // 8 + 1))
        box = _paste(scene, layers, x0, y0)
        if box is not None:
            placed.append(SceneHead(pattern.individual, date, condition, box))
    if placed and rng.random() < 0.3:  # partial occlusion: a stick or stone over a head
        scene = _occlude(rng, scene, placed[0].box)
    condition = heads[0][1][2] if heads else str(rng.choice(CONDITIONS))
    scene = scene * np.float32(_SCENE_GAIN[condition])
    scene = _glare(rng, scene)
    out = np.clip(scene * 255 + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        blur = ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))
        out = np.asarray(Image.fromarray(out).filter(blur))
    return out, placed


def _water(rng, width, height) -> np.ndarray:
    """Murky water: a tinted vertical gradient with low-frequency blotches, float32 (H, W, 3)."""
    base = np.array([0.16, 0.26, 0.2]) * rng.uniform(0.6, 1.4) * rng.uniform(0.8, 1.2, 3)
    grid = rng.uniform(0.6, 1.4, (4, 5, 3))
    blotch = np.asarray(Image.fromarray((grid * 127).astype(np.uint8)).resize(
        (width, height), Image.BICUBIC), np.float32) / 127  # fmt: skip
    ramp = np.linspace(1.2, 0.8, height, dtype=np.float32)[:, None, None]
    return (base * blotch * ramp).astype(np.float32)


def _clutter(rng, scene, count) -> np.ndarray:
    """Stones (soft ellipses, some speckled like a head) and sticks, drawn below the heads."""
    h, w = scene.shape[:2]
    img = Image.fromarray(np.clip(scene * 255, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(count):
        tone = _stone_tone(rng)
        if rng.random() < 0.6:
            rx, ry = rng.uniform(0.03, 0.15) * w, rng.uniform(0.03, 0.12) * h
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=tone)
            for _ in range(int(rng.integers(0, 12))):  # speckles: spots are not enough
                sx, sy = cx + rng.uniform(-0.7, 0.7) * rx, cy + rng.uniform(-0.7, 0.7) * ry
                r = rng.uniform(0.04, 0.12) * min(rx, ry)
                draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=tuple(t // 3 for t in tone))
        else:
            _stick(draw, rng, w, h, tone)
    img = img.filter(ImageFilter.GaussianBlur(1.0))
    return np.asarray(img, np.float32) / 255


def _stone_tone(rng) -> tuple[int, int, int]:
    """Grey to olive-brown, as river stones and wood are."""
    grey = rng.uniform(30, 120)
    return tuple(int(grey * t) for t in (rng.uniform(0.95, 1.15), 1.0, rng.uniform(0.7, 0.95)))


def _stick(draw, rng, w, h, tone, near=None) -> None:
    cx, cy = near if near is not None else (rng.uniform(0, w), rng.uniform(0, h))
    length, angle = rng.uniform(0.1, 0.4) * w, rng.uniform(0, math.pi)
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=tone,
              width=int(rng.uniform(0.006, 0.02) * w) + 1)  # fmt: skip


def _paste(scene, layers, x0, y0) -> tuple[int, int, int, int] | None:
    """Blend the animal into ``scene`` at (x0, y0) (may hang over the border); return the
    head's box in scene pixels, clipped, or None when under a quarter of the head is inside."""
    h, w = scene.shape[:2]
    s = layers.alpha.shape[0]
    # fade the body out toward the crop's edges, so no square outline is left in the scene
    ramp = np.clip(np.minimum(np.arange(s), np.arange(s)[::-1]) / (0.12 * s), 0, 1)
    alpha = layers.alpha * np.minimum.outer(ramp, ramp)
    alpha = np.maximum(alpha, layers.head_mask.astype(np.float32))
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if xb <= xa or yb <= ya:
        return None
    sub = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
    a = alpha[sub][..., None]
    under = scene[ya:yb, xa:xb]
    scene[ya:yb, xa:xb] = a * (layers.image[sub] / np.float32(255)) + (1 - a) * under
    ys, xs = np.nonzero(layers.head_mask)
    inside = layers.head_mask[sub].sum()
    if len(xs) == 0 or inside < 0.25 * len(xs):
        return None
    box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
    return (max(int(box[0]), 0), max(int(box[1]), 0), min(int(box[2]), w), min(int(box[3]), h))


def _occlude(rng, scene, box) -> np.ndarray:
    """A stick or a stone over part of a head (at most about a quarter of its box)."""
    img = Image.fromarray(np.clip(scene * 255, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = box
    tone = _stone_tone(rng)
    if rng.random() < 0.5:
        side = rng.choice(4)
        r = 0.25 * min(x2 - x1, y2 - y1)
        cx = (x1, x2, (x1 + x2) / 2, (x1 + x2) / 2)[side]
        cy = ((y1 + y2) / 2, (y1 + y2) / 2, y1, y2)[side]
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tone)
    else:
        h, w = scene.shape[:2]
        _stick(draw, rng, w, h, tone, near=(rng.uniform(x1, x2), rng.uniform(y1, y2)))
    return np.asarray(img, np.float32) / 255


def _glare(rng, scene) -> np.ndarray:
    """Bright soft streaks on the water surface, anywhere (with probability 0.4)."""
    if rng.random() >= 0.4:
        return scene
    h, w = scene.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    keep = np.ones((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        a, b, t = rng.uniform(0.05, 0.3) * w, rng.uniform(0.01, 0.05) * h, rng.uniform(0, math.pi)
        c, s = math.cos(t), math.sin(t)
        d2 = (((xs - cx) * c + (ys - cy) * s) / a) ** 2 + (((ys - cy) * c - (xs - cx) * s) / b) ** 2
        keep *= 1 - rng.uniform(0.3, 0.7) * np.clip(1 - d2, 0, 1)
    glare = (1 - keep)[..., None]
    return scene + glare * (np.float32([0.92, 0.96, 1.0]) - scene)


def _write_scene(out_dir, split, stem, image, placed: Sequence[SceneHead], w, h) -> None:
    img_path = out_dir / "images" / split / f"{stem}.jpg"
    lbl_path = out_dir / "labels" / split / f"{stem}.txt"
    img_path.parent.mkdir(parents=True, exist_ok=True)
    lbl_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(img_path, quality=90)
    lines = []
    for head in placed:
        x1, y1, x2, y2 = head.box
        lines.append(f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                     f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")  # fmt: skip
    lbl_path.write_text("".join(line + "\n" for line in lines))


def read_scene_heads(scenes_csv: str | Path) -> list[dict[str, str]]:
    """The rows of a scenes.csv (one per head; empty scenes have an empty individual)."""
    with open(scenes_csv, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
