"""The one image loader: every file that becomes a tensor, for training, enrolling or matching,
passes through :func:`load_image` and :func:`prepare_image`.

Field photos arrive as phone JPEGs (with EXIF rotation), iPhone HEIC, scanned 16-bit TIFFs,
greyscale or CMYK files and PNGs with alpha. All of them come out as 8-bit RGB, upright.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from reid.errors import ImageLoadError

try:  # iPhone photos are HEIC; pillow-heif is a declared dependency, but stay importable without it
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - exercised only on a broken install
    pillow_heif = None

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".pgm", ".ppm"}
)
# 120 MP admits every phone camera (48-200 MP sensors bin to <= 50 MP by default) and refuses
# decompression bombs, which claim gigapixels in a few kilobytes.
DEFAULT_MAX_PIXELS = 120_000_000
_OPEN_LOCK = threading.Lock()


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``path`` fully into an upright 8-bit RGB image.

    Raises :class:`ImageLoadError` with a short reason for a missing, empty, truncated,
    unreadable or oversized file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ImageLoadError(path, "file is empty (0 bytes)")
    try:
        with _open_checked(path, max_pixels) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(
            path, f"image is larger than {max_pixels:,} pixels (possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image file that can be read") from None
    except OSError as exc:
        text = str(exc).lower()
        reason = "file is truncated" if "truncat" in text else f"cannot be decoded ({exc})"
        raise ImageLoadError(path, reason) from None
    except (ValueError, SyntaxError) as exc:  # some plugins report corrupt headers this way
        raise ImageLoadError(path, f"cannot be decoded ({exc})") from None


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    """``Image.open`` (reads the header only) under our pixel limit.

    Pillow keeps its limit in a module global and warns through the process-wide warnings
    filters, neither of which is thread-safe, and images are decoded in threads: so the limit is
    swapped in under a lock held just while the header is parsed.
    """
    with _OPEN_LOCK, warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its limit; a bomb is refused either way.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit and 32-bit greyscale are rescaled from their full range (Pillow's own ``convert``
    clips them to 255, which turns most of the photo white); alpha is composited over black,
    the colour of an empty background.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def resize_square(img: Image.Image, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` (as the paper does: the head crop is stretched, not padded).

    Returns (size, size, 3) uint8.
    """
    if img.size != (size, size):
        # reducing_gap makes large phone photos fast to shrink at no visible cost
        img = img.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)


def prepare_image(
    path: str | Path,
    size: int,
    *,
    box: tuple[int, int, int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """File -> optional crop ``box`` (x0, y0, x1, y1 in pixels) -> (size, size, 3) uint8 RGB."""
    img = load_image(path, max_pixels=max_pixels)
    if box is not None:
        img = img.crop(box)
    return resize_square(img, size)


def try_prepare_image(
    path: str | Path,
    size: int,
    *,
    box: tuple[int, int, int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray | ImageLoadError:
    """:func:`prepare_image`, returning the error instead of raising it: for batches, where a
    bad photo is reported and the rest goes on."""
    try:
        return prepare_image(path, size, box=box, max_pixels=max_pixels)
    except ImageLoadError as exc:
        return exc
