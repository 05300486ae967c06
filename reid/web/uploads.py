"""Uploaded photos: checked by their content, stored durably under a name chosen from it.

A volunteer's file name is shown back to them and never used as a path; the stored file is
``<sha256>.<format>`` where the format is what the bytes decode as (JPEG, PNG or HEIF), not what
the name says. The file is written to a temporary name, fsynced, renamed into place and the
folder fsynced before the database row that points at it is committed, so an acknowledged
upload is complete on disk and an interrupted one leaves at worst an unreferenced file.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from reid.errors import ImageLoadError, ReIDError
from reid.io.images import _open_checked, load_image

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "HEIF": "heic"}
"""Formats a phone or camera writes, and the suffix each is stored with."""
# Phone cameras bin to <= 50 MP; a claim of more is a bomb or nothing a volunteer would send.
MAX_PIXELS = 60_000_000
_BAD_NAME = re.compile(r"[/\\\x00]|^\.\.?$|(^|[/\\])\.\.")


class UploadRefused(ReIDError):
    """One uploaded file that is refused; the message names it and says why."""


@dataclass(frozen=True)
class Limits:
    """What one submission may hold."""

    max_photos: int = 10
    max_bytes: int = 25 * 1024 * 1024  # per photo: a 50 MP phone JPEG is ~20 MB
    max_pixels: int = MAX_PIXELS

    @property
    def max_request_bytes(self) -> int:
        """A whole submission: its photos plus the form fields and multipart framing."""
        return self.max_photos * self.max_bytes + 1024 * 1024


@dataclass(frozen=True)
class CheckedPhoto:
    original_name: str
    data: bytes
    sha256: str
    format: str  # JPEG | PNG | HEIF
    width: int
    height: int
    exif_date: str
    exif_gps: tuple[float, float] | None

    @property
    def stored_name(self) -> str:
        return f"{self.sha256}.{ALLOWED_FORMATS[self.format]}"


def megabytes(n: int) -> str:
    """``25 MB``, ``0.29 MB``: two significant figures below 10 MB."""
    return f"{n / 2**20:.2g} MB" if n < 10 * 2**20 else f"{n / 2**20:.0f} MB"


def safe_display_name(name: str) -> str:
    """A file name as a volunteer sent it, cut to 120 printable characters for display."""
    return "".join(c for c in name if c.isprintable())[:120]


def check_upload(name: str, data: bytes, limits: Limits, scratch_dir: Path) -> CheckedPhoto:
    """Decode ``data`` fully and return what it is; :class:`UploadRefused` (naming ``name`` and
    the reason) for a file name with a path in it, an empty or over-size file, something that is
    not a JPEG/PNG/HEIC photo, a truncated one or a decompression bomb."""
    shown = safe_display_name(name) or "(no name)"
    if _BAD_NAME.search(name):
        raise UploadRefused(
            f"File {shown!r} is refused: its name contains a folder path; send the photo "
            "under a plain file name."
        )
    if not data:
        raise UploadRefused(f"File {shown!r} is refused: it is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise UploadRefused(
            f"File {shown!r} is refused: it is {megabytes(len(data))}, more than the "
            f"{megabytes(limits.max_bytes)} a photo may have."
        )
    scratch_dir.mkdir(parents=True, exist_ok=True)
    probe = scratch_dir / f".check-{secrets.token_hex(8)}"
    probe.write_bytes(data)
    try:
        try:
            with _open_checked(probe, limits.max_pixels) as img:
                fmt = img.format or ""
        except Exception:  # decoded properly (and the reason named) by load_image below
            fmt = ""
        try:
            img = load_image(probe, max_pixels=limits.max_pixels)
        except ImageLoadError as exc:
            raise UploadRefused(f"File {shown!r} is refused: {exc.reason}.") from None
        if fmt not in ALLOWED_FORMATS:
            raise UploadRefused(
                f"File {shown!r} is refused: it is a {fmt or 'unknown'} file, not a JPEG, PNG "
                "or HEIC photo."
            )
        from reid.ecology.sightings import exif_date

        date, gps = exif_date(probe), exif_gps(probe)
        return CheckedPhoto(
            shown, data, hashlib.sha256(data).hexdigest(), fmt, img.width, img.height, date, gps
        )
    finally:
        probe.unlink(missing_ok=True)


def exif_gps(path: str | Path) -> tuple[float, float] | None:
    """(latitude, longitude) in decimal degrees from a photo's EXIF GPS block, or None."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            gps = img.getexif().get_ifd(0x8825)
        lat = _degrees(gps[2], gps.get(1, "N"), "S")
        lon = _degrees(gps[4], gps.get(3, "E"), "W")
    except Exception:  # no GPS block, or one we cannot read: the volunteer types the place
        return None
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else None


def _degrees(dms, ref, negative: str) -> float:
    d, m, s = (float(x) for x in dms)
    value = d + m / 60 + s / 3600
    return -value if str(ref).upper().startswith(negative) else value


def store_durably(photo: CheckedPhoto, uploads_dir: Path) -> Path:
    """Write the photo as ``uploads_dir/<stored_name>``: temp file, fsync, rename, fsync dir."""
    uploads_dir.mkdir(parents=True, exist_ok=True)
    final = uploads_dir / photo.stored_name
    if final.exists() and final.stat().st_size == len(photo.data):
        return final  # the same bytes were sent before: one copy serves both submissions
    tmp = uploads_dir / f".tmp-{secrets.token_hex(8)}"
    with open(tmp, "wb") as f:
        f.write(photo.data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fd = os.open(uploads_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


__all__ = [
    "ALLOWED_FORMATS",
    "CheckedPhoto",
    "Limits",
    "UploadRefused",
    "check_upload",
    "megabytes",
    "exif_gps",
    "safe_display_name",
    "store_durably",
]
