"""The photo region a local scorer works on: the identified crop (or the whole photo), resized
so that its longer side is the scorer's ``max_side``.

The region is always brought to exactly ``max_side``, enlarged as well as shrunk: then a head
is about the same number of pixels across in every photo, which matters to XFeat (it is not
scale invariant), and the verification threshold, in pixels, means the same on every photo.
Enlarging a small crop adds no detail, but neither does it harm SIFT (scale invariant).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from reid.errors import ImageLoadError
from reid.io.images import load_image

Box = tuple[float, float, float, float]


def prepare_region(path: str | Path, box: Box | None = None, max_side: int = 512) -> np.ndarray:
    """File -> upright RGB (EXIF orientation applied) -> crop ``box`` -> resized region.

    ``box`` is (x0, y0, x1, y1) in pixels of the upright photo, or None for the whole photo;
    a box reaching past the photo is clipped to it. Returns (H, W, 3) uint8 RGB with
    max(H, W) == ``max_side`` and the aspect ratio kept (the shorter side at least 1 pixel).
    Raises :class:`ImageLoadError` for a file that cannot be read or a box with no pixels in
    the photo, ValueError for ``max_side`` < 1.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    img = load_image(path)
    if box is not None:
        img = img.crop(_clip_box(path, box, img.size))
    return resize_longer_side(img, max_side)


def _clip_box(path: str | Path, box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` rounded to whole pixels and clipped to an image of ``size`` (width, height)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = size
    clipped = (
        max(0, int(np.floor(x0))),
        max(0, int(np.floor(y0))),
        min(width, int(np.ceil(x1))),
        min(height, int(np.ceil(y1))),
    )
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise ImageLoadError(path, f"box {tuple(box)} has no pixels in the {width}x{height} photo")
    return clipped


def resize_longer_side(img: Image.Image | np.ndarray, max_side: int) -> np.ndarray:
    """Resize so that the longer side is ``max_side``: (H, W, 3) uint8 RGB out."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    width, height = img.size
    scale = max_side / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new != img.size:
        # reducing_gap shrinks large phone photos fast at no visible cost
        img = img.resize(new, Image.BICUBIC, reducing_gap=3.0 if scale < 1 else None)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
