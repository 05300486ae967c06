"""Video to still frames, as the study did (10 frames per second of each video).

Each frame becomes a JPEG in the output folder, named after its video and time, and a row of the
folder's ``manifest.csv``: ``path,individual,video,frame,timestamp_s,recorded_at,date,time,
sighting``. ``sighting`` is the video's name, so frames of one video are never split between
training and test (they are near-duplicates). ``recorded_at`` is the video's recording time
from its MP4/MOV header plus the frame's offset, or empty when the file does not carry one.
Phones store that time in UTC; it is written in the time zone given (default: this computer's),
with its offset, and ``date``/``time`` are that zone's, so a dawn survey in Japan (UTC+9) is not
dated the day before. The manifest is the dataset format of ``reid train``: fill its
``individual`` column (or pass ``individual``) before training on the frames.
"""

from __future__ import annotations

import csv
import io
import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

from tqdm.auto import tqdm

from reid.errors import ReIDError

MANIFEST_COLUMNS = (
    "path", "individual", "video", "frame", "timestamp_s", "recorded_at", "date", "time",
    "sighting", "source",
)  # fmt: skip
_MP4_EPOCH = datetime(1904, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class FrameRow:
    """One written frame: ``path`` the JPEG, ``frame`` its index in the video, ``timestamp_s``
    its time from the video's start, ``recorded_at`` its wall-clock time (None if unknown)."""

    path: Path
    video: str
    frame: int
    timestamp_s: float
    recorded_at: datetime | None
    individual: str = ""
    source: str = ""  # the video file, resolved


@dataclass
class FramesOutcome:
    """What a call wrote: ``rows`` (every frame), ``failed`` ({video path: reason})."""

    manifest: Path
    rows: list[FrameRow] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        videos = len({r.video for r in self.rows})
        text = f"wrote {len(self.rows)} frame(s) of {videos} video(s) and {self.manifest}"
        return text + "".join(f"\n  skipped {v}: {why}" for v, why in self.failed.items())


def recording_time(path: str | Path) -> datetime | None:
    """The creation time in an MP4/MOV file's movie header (``moov/mvhd``), UTC; None when the
    file has none (zero, absent, or not an MP4/MOV file). Reads box headers only."""
    try:
        with open(path, "rb") as fh:
            moov = _find_box(fh, b"moov", os.fstat(fh.fileno()).st_size)
            if moov is None:
                return None
            mvhd = _find_box(fh, b"mvhd", moov)
            if mvhd is None:
                return None
            version = fh.read(4)[0]
            raw = fh.read(8 if version == 1 else 4)
            seconds = struct.unpack(">Q" if version == 1 else ">I", raw)[0]
    except (OSError, struct.error, IndexError):
        return None
    if seconds == 0:
        return None
    try:
        return _MP4_EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _find_box(fh: io.BufferedReader, kind: bytes, end: int) -> int | None:
    """Scan boxes from the current position up to ``end``; on finding ``kind`` leave the file
    at its payload and return the payload's end offset."""
    while fh.tell() + 8 <= end:
        start = fh.tell()
        size, name = struct.unpack(">I4s", fh.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", fh.read(8))[0], 16
        elif size == 0:
            size = end - start
        if size < header:
            return None
        if name == kind:
            return start + size
        fh.seek(start + size)
    return None


def extract_frames(
    videos: Sequence[str | Path],
    out_dir: str | Path,
    *,
    fps: float = 10.0,
    individual: str = "",
    tz: tzinfo | None = None,
    jpeg_quality: int = 95,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FramesOutcome:
    """Write ``fps`` frames per second of each video into ``out_dir`` and (re)write its manifest.

    Frames are taken at 0, 1/fps, 2/fps, ... s (the first video frame at or after each time);
    a video slower than ``fps`` gives all its frames. A video that cannot be read is reported in
    ``failed`` and the others go on. ``tz``: the time zone of ``recorded_at``, ``date`` and
    ``time`` (None: this computer's local zone). Rows already in the manifest for other videos
    are kept; a video extracted again replaces its rows. The manifest is replaced atomically.
    """
    import cv2

    if not fps > 0:
        raise ReIDError(f"--fps {fps} must be positive (the study used 10).")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome = FramesOutcome(manifest=out_dir / "manifest.csv")
    how = _Sampling(out_dir, fps, individual, tz, jpeg_quality, progress)
    kept = _read_rows(outcome.manifest)
    replaced: list[str] = []
    seen_stems: set[str] = set()
    for video in map(Path, videos):
        if not video.is_file():
            outcome.failed[str(video)] = "no such file"
            continue
        source = str(video.resolve())
        taken = {r["video"]: r.get("source", "") for r in kept}
        stem = _unique_stem(video, source, seen_stems, taken)
        cap = cv2.VideoCapture(str(video))
        if not cap.isOpened():
            outcome.failed[str(video)] = "not a video OpenCV can read"
            continue
        try:
            rows = _extract_one(cv2, cap, video, stem, source, how)
        finally:
            cap.release()
        if not rows:
            outcome.failed[str(video)] = "no frame could be decoded"
            continue
        outcome.rows.extend(rows)
        replaced += [r["path"] for r in kept if r.get("video") == stem]
        kept = [r for r in kept if r.get("video") != stem]
        log(f"{video}: {len(rows)} frame(s)")
    _write_manifest(outcome.manifest, kept, outcome.rows, out_dir)
    # frames of an earlier extraction of the same video that this one did not rewrite
    fresh = {r.path.name for r in outcome.rows}
    for name in replaced:
        if Path(name).name not in fresh:
            (out_dir / name).unlink(missing_ok=True)
    return outcome


def _unique_stem(video: Path, source: str, seen: set[str], taken: dict[str, str]) -> str:
    """The video's file name without suffix, unless another video already has that name, in
    this call or in the manifest (cards from two cameras both hold ``GOPR0001.MP4``): then the
    parent folder's name goes in front, then a number. The same file extracted again keeps its
    name, so its rows are replaced; another file's rows never are."""

    def free(name: str) -> bool:
        return name not in seen and taken.get(name, source) == source

    stem = video.stem
    candidates = [stem, f"{video.parent.name}_{stem}"]
    candidates += [f"{video.parent.name}_{stem}_{n}" for n in range(2, 10_000)]
    stem = next(c for c in candidates if free(c))
    seen.add(stem)
    return stem


@dataclass(frozen=True)
class _Sampling:
    """How :func:`extract_frames` samples and writes the frames of every video of one call."""

    out_dir: Path
    fps: float
    individual: str
    tz: tzinfo | None
    jpeg_quality: int
    progress: bool


def _extract_one(cv2, cap, video: Path, stem: str, source: str, how: _Sampling) -> list[FrameRow]:
    """The frames of one opened video (``cap``), written as JPEGs named after ``stem``."""
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    start = recording_time(video)
    if start is not None:
        start = start.astimezone(how.tz)  # tz None: the local zone
    rows: list[FrameRow] = []
    next_t, index = 0.0, -1
    bar = tqdm(total=total or None, desc=stem, unit="frame", disable=not how.progress, leave=False)
    # half a source frame of tolerance, so a 30 fps video gives exactly every third frame
    slack = 0.5 / src_fps if src_fps > 0 else 1e-3
    while cap.grab():
        index += 1
        bar.update(1)
        t = index / src_fps if src_fps > 0 else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if t + slack < next_t:
            continue
        ok, image = cap.retrieve()
        if not ok or image is None:
            continue
        while next_t <= t + slack:
            next_t += 1.0 / how.fps
        path = how.out_dir / f"{stem}_t{round(t * 1000):08d}ms.jpg"
        _write_jpeg(cv2, path, image, how.jpeg_quality)
        when = start + timedelta(seconds=t) if start else None
        rows.append(FrameRow(path, stem, index, round(t, 4), when, how.individual, source))
    bar.close()
    return rows


def _write_jpeg(cv2, path: Path, image, quality: int) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ReIDError(f"Could not encode a frame as JPEG for {path}.")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)


def _read_rows(manifest: Path) -> list[dict[str, str]]:
    if not manifest.is_file():
        return []
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if "video" not in (reader.fieldnames or []):
            raise ReIDError(
                f"{manifest} exists and is not a frames manifest (no 'video' column): "
                "give another --out folder."
            )
        return list(reader)


def _write_manifest(manifest: Path, kept: list[dict[str, str]], rows: list[FrameRow],
                    out_dir: Path) -> None:  # fmt: skip
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".csv", dir=out_dir)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
            for r in rows:
                when = r.recorded_at
                writer.writerow({
                    "path": r.path.relative_to(out_dir).as_posix(),
                    "individual": r.individual,
                    "video": r.video,
                    "frame": r.frame,
                    "timestamp_s": f"{r.timestamp_s:.3f}",
                    "recorded_at": when.isoformat(timespec="milliseconds") if when else "",
                    "date": when.date().isoformat() if when else "",
                    "time": when.strftime("%H:%M:%S") if when else "",
                    "sighting": r.video,
                    "source": r.source,
                })  # fmt: skip
        os.replace(tmp, manifest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
