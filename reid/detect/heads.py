"""Photos -> heads: labelled photos cropped to their one head (for training and enrollment), and
photos to identify split into one query per head found."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from reid.detect.crop import Box
from reid.detect.detector import NO_HEAD, Detection, HeadDetector
from reid.errors import ImageLoadError
from reid.io.datasets import ImageRecord


@dataclass
class HeadSearch:
    """Labelled photos after detection: ``samples`` carry the crop box of their one head."""

    samples: list[ImageRecord]
    no_head: list[Path] = field(default_factory=list)
    several: list[tuple[Path, int]] = field(default_factory=list)  # skipped: (photo, heads)
    unreadable: list[ImageLoadError] = field(default_factory=list)
    detections: dict[Path, Detection] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """One line per photo left out, saying why."""
        lines = [f"{p}: {NO_HEAD}" for p in self.no_head]
        lines += [
            f"{p}: {n} heads found; give --best to use the most confident, or crop the photo "
            "by hand"
            for p, n in self.several
        ]
        return lines + [f"{e.path}: {e.reason}" for e in self.unreadable]

    def summary(self) -> str:
        text = f"heads: {len(self.samples)} photos cropped to their head"
        left = len(self.no_head) + len(self.several) + len(self.unreadable)
        return text + (f", {left} left out" if left else "")


def crop_samples(
    detector: HeadDetector,
    samples: Sequence[ImageRecord],
    *,
    best: bool = False,
    progress: bool = True,
) -> HeadSearch:
    """Find the one head in each labelled photo and set the sample's crop ``box``.

    A photo with no head is left out and named; a photo with several heads is left out unless
    ``best`` (then its most confident head is used): with several animals in view the label
    cannot say which of them it means."""
    found = detector.detect_paths([s.path for s in samples], progress=progress)
    out = HeadSearch([])
    for sample, heads in zip(samples, found, strict=True):
        path = Path(sample.path)
        if isinstance(heads, ImageLoadError):
            out.unreadable.append(heads)
        elif not heads:
            out.no_head.append(path)
        elif len(heads) > 1 and not best:
            out.several.append((path, len(heads)))
        else:
            out.samples.append(replace(sample, box=heads[0].crop))
            out.detections[path] = heads[0]
    return out


@dataclass(frozen=True)
class Query:
    """One thing to identify: a photo, or one head in it (``head`` = 1-based, of ``heads``)."""

    path: Path
    box: Box | None = None
    head: int = 0
    heads: int = 0
    confidence: float | None = None
    error: str = ""

    @property
    def label(self) -> str:
        return query_label(self.path, self.head, self.heads)


def query_label(path: Path, head: int, heads: int) -> str:
    """The photo's name, with the head's number when the photo holds several: ``a.jpg#2``."""
    return path.name + (f"#{head}" if heads > 1 else "")


def head_queries(
    detector: HeadDetector | None,
    photos: Sequence[Path],
    *,
    best: bool = False,
    progress: bool = True,
) -> list[Query]:
    """Each detected head becomes its own query (only the most confident with ``best``); a
    photo with no head, or that cannot be read, becomes one query carrying the error. With no
    ``detector`` each photo is one query for the whole photo (the one photos -> queries step
    of match, screen and explain)."""
    if detector is None:
        return [Query(Path(p)) for p in photos]
    out: list[Query] = []
    for path, heads in zip(photos, detector.detect_paths(photos, progress=progress), strict=True):
        if isinstance(heads, ImageLoadError):
            out.append(Query(Path(path), error=heads.reason))
        elif not heads:
            out.append(Query(Path(path), error=NO_HEAD))
        else:
            heads = heads[:1] if best else heads
            out += [
                Query(Path(path), d.crop, k, len(heads), d.confidence)
                for k, d in enumerate(heads, start=1)
            ]
    return out


__all__ = ["HeadSearch", "Query", "crop_samples", "head_queries", "query_label"]
