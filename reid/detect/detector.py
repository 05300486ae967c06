"""Head detection: a YOLOv5 detector trained on the user's own boxes, and the crops it gives.

The study found heads with a YOLOv5 detector and identified the crops (accuracy fell without
cropping). This module wraps the maintained ``ultralytics`` package with a YOLOv5 model config
(``yolov5nu.yaml`` by default), offline-safe: ``YOLO_OFFLINE`` is set before ultralytics is
imported, the model is built from its yaml with random weights unless the user gives a weights
file, and nothing is plotted (plots fetch a font). So training and detection never try to
download weights, fonts or updates, on a field laptop or in CI.

A detector folder is written by :func:`reid.detect.training.train_detector` (``reid detect
train``); :func:`load_detector` reads it. :mod:`reid.detect.heads` turns the detections into
cropped training photos and one query per head.

Boxes are ``(x1, y1, x2, y2)`` integer pixels in the upright photo (EXIF orientation applied,
as :func:`reid.io.images.load_image` gives it), so the same box crops the same pixels when the
photo is embedded later. The crop around a head follows :func:`reid.detect.crop.crop_box`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from reid.detect.crop import Box, crop_box
from reid.errors import ImageLoadError, ReIDError
from reid.io.images import DEFAULT_MAX_PIXELS, load_image

DEFAULT_ARCHITECTURE = "yolov5nu.yaml"
DETECTOR_FILE = "detector.pt"
META_FILE = "detector.json"
NO_HEAD = "no head found"
# Detections below this confidence are ignored. Higher than ultralytics' 0.25: in the pipeline a
# false "head" (a speckled stone) becomes a query that can be matched or enrolled as a new
# individual, while a missed head is reported "no head found" and can be cropped by hand.
DEFAULT_CONF = 0.5


def ultralytics_offline():
    """Import ultralytics with every network feature off (weights, fonts, updates, telemetry)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        import ultralytics
    except ImportError as exc:  # pragma: no cover - a dependency of this package
        raise ReIDError(
            f"The head detector needs the ultralytics package ({exc}); reinstall the toolkit "
            "with `pip install -e .` (it brings ultralytics-opencv-headless)."
        ) from None
    from PIL import Image
    from ultralytics.utils import SETTINGS, patches

    SETTINGS.update({"sync": False})  # no usage analytics
    # ultralytics replaces PIL.Image.open with a wrapper that, on a file Pillow cannot read,
    # pip-installs pi-heif (a download) and raises ModuleNotFoundError offline; that would turn
    # "not an image file" into a crash for every later photo. HEIC is read by pillow-heif here.
    Image.open = getattr(patches, "_image_open", Image.open)
    return ultralytics


@contextmanager
def keep_torch_threads():
    """ultralytics sets torch's CPU threads to cores - 1 whenever it picks a device (so 1 on a
    2-core laptop), which would slow every later embedding in this process; put it back."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Detection:
    """One head found in a photo: its box, the detector's confidence and the region cut for
    identification (the box grown by the crop rule, clipped to the photo)."""

    box: Box
    confidence: float
    crop: Box


@dataclass(frozen=True)
class DetectorInfo:
    """What a detector folder says about itself (defaults for a bare weights file)."""

    architecture: str = DEFAULT_ARCHITECTURE
    imgsz: int = 640
    crop_margin: float = 0.1
    conf: float = DEFAULT_CONF
    metrics: dict[str, float] = field(default_factory=dict)


class HeadDetector:
    """A trained head detector. ``detect_paths`` finds heads in photo files."""

    def __init__(
        self,
        weights: str | Path,
        info: DetectorInfo | None = None,
        *,
        device: str = "auto",
        conf: float | None = None,
        batch_size: int = 8,
    ) -> None:
        self.path = Path(weights)
        ultralytics = ultralytics_offline()
        try:
            self.model = ultralytics.YOLO(str(self.path), task="detect")
        except Exception as exc:  # ultralytics raises many kinds for a bad file
            raise ReIDError(
                f"Detector {self.path} cannot be loaded ({type(exc).__name__}: {exc}); give the "
                "folder written by `reid detect train` or a YOLO detection .pt file."
            ) from None
        if getattr(self.model, "task", "detect") != "detect":
            raise ReIDError(
                f"Detector {self.path} is a YOLO {self.model.task} model, not a detector; "
                "train one with `reid detect train`."
            )
        self.info = info or DetectorInfo(imgsz=int(self.model.overrides.get("imgsz", 640)))
        self.conf = self.info.conf if conf is None else conf
        self.device = ultralytics_device(device)
        self.batch_size = batch_size

    @property
    def crop_margin(self) -> float:
        return self.info.crop_margin

    def detect_images(self, images: Sequence[Any]) -> list[list[Detection]]:
        """Heads in each RGB PIL image, most confident first (empty list: no head found)."""
        out: list[list[Detection]] = []
        for begin in range(0, len(images), self.batch_size):
            batch = list(images[begin : begin + self.batch_size])
            with keep_torch_threads():
                results = self.model.predict(
                    batch,
                    imgsz=self.info.imgsz,
                    conf=self.conf,
                    device=self.device,
                    verbose=False,
                )
            for img, res in zip(batch, results, strict=True):
                w, h = img.size
                found = []
                xyxy = res.boxes.xyxy.cpu().numpy() if res.boxes is not None else []
                confs = res.boxes.conf.cpu().numpy() if res.boxes is not None else []
                for (x1, y1, x2, y2), c in zip(xyxy, confs, strict=True):
                    box = _clip((x1, y1, x2, y2), w, h)
                    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                        continue
                    found.append(Detection(box, float(c), crop_box(box, w, h, self.crop_margin)))
                out.append(sorted(found, key=lambda d: -d.confidence))
        return out

    def detect_paths(
        self,
        paths: Sequence[str | Path],
        *,
        progress: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        desc: str = "finding heads",
    ) -> list[list[Detection] | ImageLoadError]:
        """Heads in each photo file; an unreadable photo gives its :class:`ImageLoadError` and
        the rest goes on."""
        out: list[list[Detection] | ImageLoadError] = []
        with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
            for begin in range(0, len(paths), self.batch_size):
                chunk = paths[begin : begin + self.batch_size]
                images, slots = [], []
                results: list[list[Detection] | ImageLoadError] = []
                for p in chunk:
                    try:
                        images.append(load_image(p, max_pixels=max_pixels))
                        slots.append(len(results))
                        results.append([])
                    except ImageLoadError as exc:
                        results.append(exc)
                for slot, found in zip(slots, self.detect_images(images), strict=True):
                    results[slot] = found
                out += results
                bar.update(len(chunk))
        return out


def load_detector(
    path: str | Path, *, device: str = "auto", conf: float | None = None
) -> HeadDetector:
    """A detector folder from ``reid detect train`` (or its detector.pt, or any YOLO detection
    weights file); errors name the path and what to give instead."""
    path = Path(path)
    if path.is_dir():
        weights = path / DETECTOR_FILE
        if not weights.is_file():
            raise ReIDError(
                f"Detector folder {path} has no {DETECTOR_FILE}: give a folder written by "
                "`reid detect train` (training may not have finished)."
            )
    elif path.is_file():
        weights = path
    else:
        raise ReIDError(
            f"Detector {path} does not exist: give the folder written by `reid detect train` "
            "or its detector.pt."
        )
    meta = weights.parent / META_FILE
    info = read_info(meta) if meta.is_file() and weights.name == DETECTOR_FILE else None
    return HeadDetector(weights, info, device=device, conf=conf)


def read_info(meta: Path) -> DetectorInfo:
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise ReIDError(f"Detector description {meta} cannot be read ({exc}).") from None
    return DetectorInfo(
        architecture=str(data.get("architecture", DEFAULT_ARCHITECTURE)),
        imgsz=int(data.get("imgsz", 640)),
        crop_margin=float(data.get("crop_margin", 0.1)),
        conf=float(data.get("conf", DEFAULT_CONF)),
        metrics=dict(data.get("metrics", {})),
    )


# ------------------------------------------------------------- which detector a model learnt with
RUN_DETECTOR_FILE = "detector_used.json"


def _weights_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def record_detector(run_dir: str | Path, detector: HeadDetector | None) -> None:
    """Write into a run folder which detector cut its training photos (or that none did)."""
    info = (
        {"detector": str(detector.path.resolve()), "sha256": _weights_digest(detector.path),
         "crop_margin": detector.crop_margin}
        if detector is not None
        else {"detector": None}
    )  # fmt: skip
    Path(run_dir, RUN_DETECTOR_FILE).write_text(json.dumps(info, indent=2))


def detector_mismatch(run: str | Path, detector: HeadDetector | None) -> str:
    """A warning when photos are about to be cut differently from how the run's model learnt
    (another detector, or a detector for a model trained on whole photos, or the reverse);
    '' when they match or the run does not say."""
    run = Path(run)
    record = (run if run.is_dir() else run.parent) / RUN_DETECTOR_FILE
    if not record.is_file():
        return ""
    try:
        used = json.loads(record.read_text())
    except (OSError, ValueError):
        return ""
    if used.get("detector") is None:
        return (
            f"warning: model {run} learnt from whole photos (no --detector); crops from "
            f"{detector.path} will look different to it"
            if detector is not None
            else ""
        )
    if detector is None:
        return (
            f"warning: model {run} learnt from heads cut by the detector {used['detector']}; "
            "without --detector it sees whole photos (pass the same --detector)"
        )
    if _weights_digest(detector.path) != used.get("sha256"):
        return (
            f"warning: model {run} learnt from heads cut by another detector "
            f"({used['detector']}); gallery and queries should be cut by that one"
        )
    return ""


def ultralytics_device(device: str) -> str:
    """Our device names (auto, cpu, cuda, cuda:N) in ultralytics' words (cpu, 0, 1 ...)."""
    if device == "auto":
        import torch

        return "0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return device.partition(":")[2] or "0"
    return device


def _clip(box: Sequence[float], width: int, height: int) -> Box:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return (max(0, x1), max(0, y1), min(width, x2), min(height, y2))


__all__ = [
    "NO_HEAD",
    "Detection",
    "DetectorInfo",
    "HeadDetector",
    "detector_mismatch",
    "keep_torch_threads",
    "load_detector",
    "read_info",
    "record_detector",
    "ultralytics_device",
    "ultralytics_offline",
]
