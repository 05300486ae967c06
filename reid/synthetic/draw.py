"""Drawing synthetic salamander heads: one :class:`SpotPattern` per individual and any number of
"photos" of it.

A Japanese giant salamander is re-identified by the dark spots on its head. :func:`make_pattern`
draws an individual (head shape, skin tone, mottling, ~25-45 dark spots; the "hybrid" population
has ~55-80 smaller, paler spots on lighter, yellower skin) and :func:`render_head` takes a photo
of it: a random rotation, scale and shift, optional blur, water glare, sensor noise and the
lighting of the time of day. :mod:`reid.synthetic.salamanders` writes whole data sets of them.

Head-normalised coordinates: the origin is the head centre, x runs across the head (half-width
1 at its middle), y runs from the snout (negative) toward the neck (positive). Every pixel of a
photo is mapped back into these coordinates and the head, spots and mask are evaluated there,
so the returned spot mask is exact for the image it comes with. numpy and Pillow only.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NoReturn

import numpy as np
from PIL import Image, ImageFilter

from reid.errors import ReIDError

CONDITIONS = ("morning", "afternoon", "evening")
POPULATIONS = ("native", "hybrid")

_HEAD_WIDTH_FRACTION = 0.76  # head width / crop width at scale 1: the paper crops heads tightly
_TRUNK_HALF_WIDTH = 0.92  # the body behind the head is a little narrower than the head
_EYE_X, _EYE_Y, _EYE_RADIUS = 0.6, -0.5, 0.045  # tiny eyes, forward and lateral (species trait)
_MOTTLE_EXTENT = 1.6  # mottling grids cover [-1.6, 1.6]^2 of head-normalised space


class SynthArgumentError(ReIDError, ValueError):
    """A bad argument to the generator; a ValueError, and a ReIDError so the CLI prints it."""


@dataclass(frozen=True)
class Spot:
    """One dark spot in head-normalised coordinates (centre, semi-axes, orientation in radians).

    ``darkness`` in (0, 1) is the fraction of skin brightness the spot removes; ``wobble`` and
    ``phase`` perturb the outline with its 2nd, 3rd and 5th harmonics so spots are not ellipses.
    """

    x: float
    y: float
    rx: float
    ry: float
    angle: float
    darkness: float
    wobble: tuple[float, float, float]
    phase: tuple[float, float, float]


@dataclass(frozen=True)
class SpotPattern:
    """Everything that identifies one individual; drawn once per individual by make_pattern."""

    individual: str
    population: str
    head_length: float  # half-length of the head (snout to neck) in half-widths
    head_power: float  # superellipse exponent: 2 is an ellipse, larger is boxier
    head_taper: float  # relative extra width at the back of the head
    skin_rgb: tuple[float, float, float]  # base skin colour, floats in [0, 1]
    mottle_seed: int  # seeds the individual's fixed skin mottling texture
    mottle_strength: float
    spots: tuple[Spot, ...]

    @property
    def num_spots(self) -> int:
        return len(self.spots)


@dataclass(frozen=True)
class _Stats:
    count: tuple[int, int]
    radius: tuple[float, float]  # in half-widths: 0.04 is 2% of the head width
    darkness: tuple[float, float]
    skin: tuple[float, float, float]
    mottle: tuple[float, float]


# fmt: off
_POPULATION_STATS = {  # count, radius, darkness, skin, mottle
    "native": _Stats((25, 45), (0.04, 0.14), (0.55, 0.85), (0.40, 0.32, 0.22), (0.18, 0.3)),
    "hybrid": _Stats((55, 80), (0.03, 0.09), (0.35, 0.6), (0.45, 0.37, 0.23), (0.12, 0.22)),
}
# fmt: on


@dataclass(frozen=True)
class _Light:
    gain: float
    tint: tuple[float, float, float]
    contrast: float  # < 1 mixes the image toward ``haze``, as murky low light does
    haze: tuple[float, float, float]
    glare_prob: float
    glare_budget: tuple[float, float]  # total glare area as a fraction of the visible head
    blur_prob: float
    noise: float  # sensor noise sigma in 8-bit levels


# fmt: off
_LIGHTS = {  # gain, tint, contrast, haze, glare_prob, glare_budget, blur_prob, noise
    "morning": _Light(1.0, (1.0, 1.0, 1.0), 1.0, (0, 0, 0), 0.35, (0.03, 0.1), 0.3, 3.0),
    "afternoon": _Light(1.2, (1.08, 1.0, 0.86), 1.0, (0, 0, 0), 0.75, (0.05, 0.15), 0.3, 2.5),
    "evening": _Light(0.55, (0.82, 0.95, 1.18), 0.8, (0.03, 0.06, 0.1), 0.15, (0.02, 0.06), 0.45,
                      6.0),
}
# fmt: on


@dataclass(frozen=True)
class _Photo:
    angle: float  # radians; head-normalised -> pixel is a rotation by this, then a scale by k
    k: float  # pixels per head-normalised unit, including the random scale
    cx: float  # pixel position of the head centre
    cy: float

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.cx + self.k * (c * x - s * y), self.cy + self.k * (s * x + c * y)


def stable_seed(*parts: object) -> int:
    """A stable 128-bit seed from names and numbers (Python's hash() changes between runs)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:16], "little")


def _fail(message: str) -> NoReturn:
    raise SynthArgumentError(message)


def check_condition(condition: str, what: str = "condition") -> None:
    """Raise a SynthArgumentError unless ``condition`` is one of :data:`CONDITIONS`."""
    _lookup(_LIGHTS, condition, what)


def _lookup(table: dict, value: str, what: str):
    """``table[value]``, or a SynthArgumentError naming ``what`` and the choices."""
    if value not in table:
        _fail(f"{what} {value!r} is not one of: {', '.join(table)}.")
    return table[value]


def _head_radius(x, y, length: float, power: float, taper: float):
    """Superellipse "radius" of points (scalars or arrays): < 1 inside the head, 1 on its edge."""
    half_width = 1.0 + taper * np.clip(y / length, -1.0, 1.0)  # wider toward the neck
    return (np.abs(x / half_width) ** power + np.abs(y / length) ** power) ** (1.0 / power)


def make_pattern(individual: str, seed: int, population: str = "native") -> SpotPattern:
    """Draw the identity of one individual; the same (individual, seed, population) gives an
    identical pattern, independent of anything else."""
    stats: _Stats = _lookup(_POPULATION_STATS, population, "population")
    rng = np.random.default_rng(stable_seed("pattern", individual, seed, population))
    length, power, taper = rng.uniform(0.82, 0.95), rng.uniform(2.1, 2.8), rng.uniform(0.0, 0.15)
    brightness = rng.uniform(0.85, 1.15)
    skin = tuple(float(c * brightness * rng.uniform(0.95, 1.05)) for c in stats.skin)
    mottle_seed, mottle_strength = int(rng.integers(2**31)), float(rng.uniform(*stats.mottle))
    spots = _draw_spots(rng, stats, length, power, taper)
    return SpotPattern(individual, population, float(length), float(power), float(taper), skin,
                       mottle_seed, mottle_strength, spots)  # fmt: skip


def _draw_spots(
    rng: np.random.Generator, stats: _Stats, length: float, power: float, taper: float
) -> tuple[Spot, ...]:
    count = int(rng.integers(stats.count[0], stats.count[1] + 1))
    # Log-uniform radii: many small spots, a few large blotches; placing big ones first packs well.
    radii = np.sort(np.exp(rng.uniform(*np.log(stats.radius), size=count)))[::-1]
    centres: list[tuple[float, float]] = []
    spots = []
    for r in radii:
        cand = np.column_stack([rng.uniform(-1, 1, 64), rng.uniform(-length, length, 64)])
        ok = _head_radius(cand[:, 0], cand[:, 1], length, power, taper) < 0.95 - r
        if centres:  # keep spots mostly apart so they do not merge into one dark blotch
            gaps = np.linalg.norm(cand[:, None] - np.array(centres)[None], axis=2)
            apart = (gaps > 1.05 * (r + radii[: len(centres)])).all(axis=1)
            ok = ok & apart if (ok & apart).any() else ok
        x, y = cand[int(np.argmax(ok))]
        centres.append((float(x), float(y)))
        elong = rng.uniform(1.0, 1.8)
        wobble = tuple(float(a) for a in rng.uniform(0, [0.12, 0.10, 0.05]))
        phase = tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 3))
        rx, ry = float(r * math.sqrt(elong)), float(r / math.sqrt(elong))
        angle, darkness = float(rng.uniform(0, math.pi)), float(rng.uniform(*stats.darkness))
        spots.append(Spot(float(x), float(y), rx, ry, angle, darkness, wobble, phase))
    return tuple(spots)


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.indices((size, size), dtype=np.float32)
    return xs, ys


@lru_cache(maxsize=512)
def _mottle_grids(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((9, 9)), rng.standard_normal((40, 40))


def _bilinear(grid: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Smoothly interpolate ``grid`` (spanning +-_MOTTLE_EXTENT) at head-normalised X, Y."""
    n = grid.shape[0] - 1
    gx = np.clip((X + _MOTTLE_EXTENT) * (n / (2 * _MOTTLE_EXTENT)), 0, n - 1e-3)
    gy = np.clip((Y + _MOTTLE_EXTENT) * (n / (2 * _MOTTLE_EXTENT)), 0, n - 1e-3)
    i, j = gx.astype(np.intp), gy.astype(np.intp)
    fx, fy = gx - i, gy - j
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)  # smoothstep hides the grid cells
    top = grid[j, i] * (1 - fx) + grid[j, i + 1] * fx
    bottom = grid[j + 1, i] * (1 - fx) + grid[j + 1, i + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _draw_photo(rng: np.random.Generator, size: int) -> _Photo:
    scale = rng.uniform(0.85, 1.15)
    shift = rng.uniform(-0.05, 0.05, 2) * size
    return _Photo(
        angle=math.radians(rng.uniform(-25, 25)),
        k=float(_HEAD_WIDTH_FRACTION * size / 2 * scale),
        cx=float((size - 1) / 2 + shift[0]),
        cy=float((size - 1) / 2 - 0.03 * size + shift[1]),  # leave room for the neck below
    )


def _canonical(photo: _Photo, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Head-normalised coordinates (X, Y) of every pixel centre, each (size, size) float32."""
    xs, ys = _pixel_grid(size)
    dx, dy = xs - np.float32(photo.cx), ys - np.float32(photo.cy)
    c, s = np.float32(math.cos(photo.angle) / photo.k), np.float32(math.sin(photo.angle) / photo.k)
    return c * dx + s * dy, c * dy - s * dx


def _spot_field(pattern: SpotPattern, X: np.ndarray, Y: np.ndarray, photo: _Photo):
    """Spot darkness (size, size) float32 in [0, 1] and the spot mask (size, size) bool.

    The mask is exactly the pixels whose centre lies inside a spot outline, i.e. where the
    anti-aliased coverage used for the darkness exceeds one half.
    """
    size = X.shape[0]
    dark = np.zeros(X.shape, np.float32)
    mask = np.zeros(X.shape, bool)
    for sp in pattern.spots:
        px, py = photo.to_pixel(sp.x, sp.y)
        half = math.ceil(max(sp.rx, sp.ry) * (1 + sum(sp.wobble)) * photo.k) + 2
        x0, x1 = max(int(px) - half, 0), min(int(px) + half + 1, size)
        y0, y1 = max(int(py) - half, 0), min(int(py) + half + 1, size)
        if x0 >= x1 or y0 >= y1:
            continue  # this spot is outside the frame in this photo
        dx, dy = X[y0:y1, x0:x1] - sp.x, Y[y0:y1, x0:x1] - sp.y
        c, s = math.cos(sp.angle), math.sin(sp.angle)
        u, v = (c * dx + s * dy) / sp.rx, (c * dy - s * dx) / sp.ry
        rho, phi = np.hypot(u, v), np.arctan2(v, u)
        edge = 1 + sum(
            a * np.cos(h * phi + p) for a, h, p in zip(sp.wobble, (2, 3, 5), sp.phase, strict=True)
        )
        cover = np.clip(0.5 + (edge - rho) * (math.sqrt(sp.rx * sp.ry) * photo.k), 0, 1)
        np.maximum(dark[y0:y1, x0:x1], sp.darkness * cover, out=dark[y0:y1, x0:x1])
        mask[y0:y1, x0:x1] |= rho < edge
    return dark, mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark greenish water with low-frequency texture, (size, size, 3) float32 in [0, 1]."""
    cells = int(rng.integers(3, 7))
    water = np.array([0.10, 0.20, 0.15]) * rng.uniform(0.8, 1.2)
    grid = rng.uniform(0.55, 1.35, (cells, cells, 1)) * rng.uniform(0.9, 1.1, (cells, cells, 3))
    small = Image.fromarray(np.clip(grid * water * 255, 0, 255).astype(np.uint8))
    return np.asarray(small.resize((size, size), Image.BICUBIC), np.float32) / 255


def _body(pattern: SpotPattern, X: np.ndarray, Y: np.ndarray, dark: np.ndarray, k: float):
    """Premultiplied head-and-neck colour (size, size, 3) and, each (size, size) float32, its
    coverage, the head's coverage and the head radius R (< 1 inside the head)."""
    p = pattern
    R = _head_radius(X, Y, p.head_length, p.head_power, p.head_taper)
    head = np.clip(0.5 + (1 - R) * (p.head_length * k), 0, 1)  # ~1 px anti-aliased edge
    grids = _mottle_grids(p.mottle_seed)
    mottle = 0.6 * _bilinear(grids[0], X, Y) + 0.4 * _bilinear(grids[1], X, Y)
    skin = np.asarray(p.skin_rgb, np.float32) * (1 + p.mottle_strength * mottle)[..., None]
    # The head is a flattened dome: its rim is darker, which also draws the crease at the neck.
    shade = (1 - 0.25 * np.minimum(R, 1) ** 6) * (1 - dark)
    for side in (-1, 1):
        eye = np.hypot(X - side * _EYE_X, Y - _EYE_Y * p.head_length)
        shade *= 1 - 0.85 * np.clip(0.5 + (_EYE_RADIUS - eye) * k, 0, 1)
    trunk = np.clip(0.5 + (_TRUNK_HALF_WIDTH - np.abs(X)) * k, 0, 1)
    trunk *= np.clip(0.5 + Y * k, 0, 1)
    trunk_shade = 0.8 * (1 - 0.3 * np.minimum(np.abs(X) / _TRUNK_HALF_WIDTH, 1) ** 4)
    behind = trunk * (1 - head)
    colour = skin * (shade * head + trunk_shade * behind)[..., None]
    return colour, head + behind, head, R


def _glare(rng: np.random.Generator, light: _Light, photo: _Photo, head_px: int, size: int):
    """Alpha (size, size) of 1-3 soft bright ellipses/streaks, or None when this photo has none.

    Their total area is at most ``glare_budget`` (<= 15%) of the visible head, so they can
    never hide more than that share of the spots.
    """
    if rng.random() >= light.glare_prob or head_px == 0:
        return None
    xs, ys = _pixel_grid(size)
    n = int(rng.integers(1, 4))
    areas = rng.dirichlet(np.ones(n)) * rng.uniform(*light.glare_budget) * head_px
    keep = np.ones((size, size), np.float32)
    for area in areas:
        gx, gy = np.array([photo.cx, photo.cy]) + rng.normal(0, 0.45 * photo.k, 2)
        elong, theta = rng.uniform(2, 7), rng.uniform(0, math.pi)
        a = math.sqrt(area * elong / math.pi)
        b = area / (math.pi * a)
        c, s = math.cos(theta), math.sin(theta)
        dx, dy = xs - gx, ys - gy
        d2 = ((c * dx + s * dy) / a) ** 2 + ((c * dy - s * dx) / b) ** 2
        keep *= 1 - rng.uniform(0.35, 0.7) * np.clip(1 - d2, 0, 1) ** 0.6
    return 1 - keep


def _light(img: np.ndarray, rng: np.random.Generator, light: _Light, size: int) -> np.ndarray:
    """Time-of-day gain/tint/contrast plus a random soft light gradient across the frame."""
    xs, ys = _pixel_grid(size)
    direction = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(0, 0.3) / size
    gradient = 1 + slope * (
        (xs - size / 2) * math.cos(direction) + (ys - size / 2) * math.sin(direction)
    )
    gain = light.gain * rng.uniform(0.92, 1.08) * np.asarray(light.tint, np.float32)
    img = img * gradient[..., None] * gain * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    return light.contrast * img + (1 - light.contrast) * np.asarray(light.haze, np.float32)


def _camera(img: np.ndarray, rng: np.random.Generator, light: _Light) -> np.ndarray:
    """Optical blur (sometimes), then sensor noise; float [0, 1] in, uint8 out."""
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < light.blur_prob:
        radius = rng.uniform(0.4, 1.3) * out.shape[0] / 192
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(radius)))
    noise = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(light.noise)
    return np.clip(out + noise + 0.5, 0, 255).astype(np.uint8)


def render_head(
    pattern: SpotPattern, rng: np.random.Generator, condition: str = "morning", size: int = 192
) -> tuple[np.ndarray, np.ndarray]:
    """Take one new "photo" of ``pattern`` under ``condition``.

    Returns ``(image, spot_mask)``: image is (size, size, 3) uint8 RGB; spot_mask is
    (size, size) bool, True on the spot pixels after the same rotation/scale/shift as the image
    (not blurred, and still True under glare). Raises ValueError for an unknown condition.
    """
    layers = render_layers(pattern, rng, condition, size)
    return layers.image, layers.spot_mask


@dataclass(frozen=True)
class HeadLayers:
    """One rendered photo and its layers, each (size, size): ``image`` (.., 3) uint8 RGB,
    ``spot_mask`` bool, ``alpha`` float32 in [0, 1] (the animal, head and neck, over the water)
    and ``head_mask`` bool (the head alone, for its bounding box)."""

    image: np.ndarray
    spot_mask: np.ndarray
    alpha: np.ndarray
    head_mask: np.ndarray


def render_layers(
    pattern: SpotPattern, rng: np.random.Generator, condition: str = "morning", size: int = 192
) -> HeadLayers:
    """:func:`render_head` with the animal's coverage as well (to paste it into a scene)."""
    light: _Light = _lookup(_LIGHTS, condition, "condition")
    if size < 32:
        _fail(f"size must be at least 32 pixels, got {size}.")
    photo = _draw_photo(rng, size)
    X, Y = _canonical(photo, size)
    dark, mask = _spot_field(pattern, X, Y, photo)
    colour, alpha, head, R = _body(pattern, X, Y, dark, photo.k)
    mask &= head > 0.5
    # The animal's shadow darkens the water just around it.
    shadow = 1 - 0.45 * np.clip((1.35 - R) / 0.35, 0, 1)
    img = _background(rng, size) * (shadow * (1 - alpha))[..., None] + colour
    img = _light(img, rng, light, size)
    glare = _glare(rng, light, photo, int((head > 0.5).sum()), size)
    if glare is not None:
        img += glare[..., None] * (np.float32([0.92, 0.96, 1.0]) - img)
    return HeadLayers(_camera(img, rng, light), mask, alpha.astype(np.float32), head > 0.5)
