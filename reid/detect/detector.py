"""Head detection: a YOLOv5 detector trained on the user's own boxes, and the crops it gives.

The study found heads with a YOLOv5 detector and identified the crops (accuracy fell without
cropping). This module wraps the maintained ``ultralytics`` package with a YOLOv5 model config
(``yolov5nu.yaml`` by default), offline-safe: ``YOLO_OFFLINE`` is set before ultralytics is
imported, the model is built from its yaml with random weights unless the user gives a weights
file, and nothing is plotted (plots fetch a font). So training and detection never try to
download weights, fonts or updates, on a field laptop or in CI.

A detector folder, written by :func:`train_detector` (``reid detect train``)::

    DIR/detector.pt      the best weights (ultralytics checkpoint)
    DIR/detector.json    architecture, input size, crop margin, confidence threshold, the
                         validation mAP50 / mAP50-95, training time, the data it learnt from
    DIR/data.yaml        the dataset file as trained on (paths made absolute)
    DIR/train/           ultralytics' own run folder (results.csv, last.pt, args.yaml)

Boxes are ``(x1, y1, x2, y2)`` integer pixels in the upright photo (EXIF orientation applied,
as :func:`reid.io.images.load_image` gives it), so the same box crops the same pixels when the
photo is embedded later. The crop around a head follows :func:`reid.detect.crop.crop_box`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from reid.detect.crop import Box, crop_box
from reid.errors import ImageLoadError, ReIDError
from reid.io.datasets import Sample
from reid.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, load_image

DEFAULT_ARCHITECTURE = "yolov5nu.yaml"
DETECTOR_FILE = "detector.pt"
META_FILE = "detector.json"
NO_HEAD = "no head found"
# Detections below this confidence are ignored. Higher than ultralytics' 0.25: in the pipeline a
# false "head" (a speckled stone) becomes a query that can be matched or enrolled as a new
# individual, while a missed head is reported "no head found" and can be cropped by hand.
DEFAULT_CONF = 0.5


def _ultralytics():
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
def _keep_torch_threads():
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
        ultralytics = _ultralytics()
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
        self.device = _device(device)
        self.batch_size = batch_size

    @property
    def crop_margin(self) -> float:
        return self.info.crop_margin

    def detect_images(self, images: Sequence[Any]) -> list[list[Detection]]:
        """Heads in each RGB PIL image, most confident first (empty list: no head found)."""
        out: list[list[Detection]] = []
        for begin in range(0, len(images), self.batch_size):
            batch = list(images[begin : begin + self.batch_size])
            with _keep_torch_threads():
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


# ------------------------------------------------------------------------------- in the pipeline
@dataclass
class HeadSearch:
    """Labelled photos after detection: ``samples`` carry the crop box of their one head."""

    samples: list[Sample]
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
    samples: Sequence[Sample],
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
    detector: HeadDetector,
    photos: Sequence[Path],
    *,
    best: bool = False,
    progress: bool = True,
) -> list[Query]:
    """Each detected head becomes its own query (only the most confident with ``best``); a
    photo with no head, or that cannot be read, becomes one query carrying the error."""
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


# ------------------------------------------------------------------------------------ training
@dataclass
class DetectorRun:
    """What :func:`train_detector` gives back."""

    directory: Path
    weights: Path
    metrics: dict[str, float]
    train_seconds: float
    epochs_run: int


def check_dataset(data: str | Path) -> dict[str, Any]:
    """Read a YOLO data.yaml (as labelImg / Roboflow / ``reid synth --scenes`` write it) and
    check what training needs; returns it with ``path`` made absolute.

    A relative ``path`` (or none) is taken relative to the yaml's own folder.
    """
    _ultralytics()
    from ultralytics.data.utils import img2label_paths

    data = Path(data)
    if not data.is_file():
        raise ReIDError(
            f"Dataset file {data} does not exist: give a YOLO data.yaml with path, train, val "
            "and names (e.g. from `reid synth OUT --scenes`)."
        )
    try:
        spec = yaml.safe_load(data.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ReIDError(f"Dataset file {data} is not valid YAML ({exc}).") from None
    if not isinstance(spec, dict) or not spec.get("train") or not spec.get("val"):
        raise ReIDError(
            f"Dataset file {data} must name `train` and `val` image folders (YOLO format)."
        )
    if not spec.get("names"):
        raise ReIDError(f"Dataset file {data} lacks `names` (e.g. names: {{0: head}}).")
    root = Path(spec.get("path") or ".")
    root = root if root.is_absolute() else (data.parent / root)
    spec["path"] = str(root.resolve())
    for split in ("train", "val"):
        for entry in spec[split] if isinstance(spec[split], list) else [spec[split]]:
            folder = Path(entry) if Path(entry).is_absolute() else root / entry
            if not folder.exists():
                raise ReIDError(f"Dataset file {data}: the {split} folder {folder} does not exist.")
            if folder.is_dir() and not any(
                p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*")
            ):
                raise ReIDError(f"Dataset file {data}: the {split} folder {folder} has no images.")
            labels = Path(img2label_paths([str(folder / "_.jpg")])[0]).parent  # ultralytics' rule
            if folder.is_dir() and not labels.is_dir():
                raise ReIDError(
                    f"Dataset file {data}: {split} images in {folder} have no labels folder "
                    f"{labels} (YOLO keeps labels/ beside images/, one .txt per image)."
                )
    return spec


def train_detector(
    data: str | Path,
    out_dir: str | Path,
    *,
    architecture: str | Path = DEFAULT_ARCHITECTURE,
    weights: str | Path | None = None,
    epochs: int = 100,
    imgsz: int = 320,
    batch: int = 16,
    patience: int = 50,
    crop_margin: float = 0.1,
    conf: float = DEFAULT_CONF,
    device: str = "auto",
    seed: int = 0,
    workers: int = 2,
) -> DetectorRun:
    """Train a YOLOv5 head detector on YOLO-format boxes and write a detector folder.

    ``architecture`` is an ultralytics model yaml (random initial weights); ``weights`` an
    optional local .pt to start from instead (nothing is downloaded). Returns the validation
    mAP50 and mAP50-95 of the best epoch and the training time.
    """
    if epochs < 1 or imgsz < 32 or batch < 1:
        raise ReIDError(
            f"epochs, imgsz and batch must be positive (got {epochs}, {imgsz}, {batch})."
        )
    if not 0 <= crop_margin <= 2:
        raise ReIDError(f"--margin {crop_margin} is outside 0-2 (0.1 adds 10 % around the box).")
    out_dir = Path(out_dir)
    spec = check_dataset(data)
    if weights is not None and not Path(weights).is_file():
        raise ReIDError(f"Weights file {weights} does not exist (nothing is downloaded).")
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = out_dir / "data.yaml"
    resolved.write_text(yaml.safe_dump(spec, sort_keys=False))
    import torch

    ultralytics = _ultralytics()
    model = ultralytics.YOLO(str(weights or architecture), task="detect")
    start = time.perf_counter()
    with _keep_torch_threads() as threads:
        # every core for the forward and backward passes (ultralytics would leave one idle)
        model.add_callback("on_pretrain_routine_end", lambda _: torch.set_num_threads(threads))
        model.train(
            data=str(resolved.resolve()),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            patience=patience,
            device=_device(device),
            workers=workers,
            seed=seed,
            deterministic=True,
            pretrained=bool(weights),
            amp=False,  # ultralytics' AMP self-check downloads yolo26n.pt on a GPU
            plots=False,  # plots fetch a font from the internet
            project=str(out_dir.resolve()),
            name="train",
            exist_ok=True,
            verbose=False,
        )
    seconds = time.perf_counter() - start
    trainer = model.trainer
    best = Path(trainer.best)
    if not best.is_file():
        raise ReIDError(f"Training wrote no weights in {best.parent}; see the log above.")
    metrics = validate_detector(best, resolved, imgsz=imgsz, device=device)
    tmp = out_dir / (DETECTOR_FILE + ".tmp")
    shutil.copyfile(best, tmp)
    os.replace(tmp, out_dir / DETECTOR_FILE)
    meta = {
        "format": "reid-detector/1",
        "architecture": str(Path(weights).name if weights else architecture),
        "start_weights": str(weights) if weights else None,
        "imgsz": imgsz,
        "crop_margin": crop_margin,
        "conf": conf,
        "epochs": epochs,
        "epochs_run": int(trainer.epoch) + 1,
        "best_epoch": int(getattr(trainer, "best_epoch", -1)),
        "train_seconds": round(seconds, 1),
        "metrics": metrics,
        "data": str(Path(data).resolve()),
        "device": _device(device),
        "ultralytics": ultralytics.__version__,
    }
    tmp = out_dir / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out_dir / META_FILE)
    return DetectorRun(out_dir, out_dir / DETECTOR_FILE, metrics, seconds, meta["epochs_run"])


def validate_detector(
    weights: str | Path,
    data: str | Path,
    *,
    imgsz: int = 320,
    device: str = "auto",
    split: str = "val",
) -> dict[str, float]:
    """Box precision, recall, mAP50 and mAP50-95 of ``weights`` on a split of ``data``."""
    ultralytics = _ultralytics()
    model = ultralytics.YOLO(str(weights), task="detect")
    with tempfile.TemporaryDirectory() as scratch, _keep_torch_threads():  # val writes a folder
        res = model.val(
            data=str(data), imgsz=imgsz, split=split, device=_device(device), plots=False,
            verbose=False, batch=16, workers=0, project=scratch, name="val",
        )  # fmt: skip
    return {
        "precision": round(float(res.box.mp), 4),
        "recall": round(float(res.box.mr), 4),
        "mAP50": round(float(res.box.map50), 4),
        "mAP50-95": round(float(res.box.map), 4),
    }


def _device(device: str) -> str:
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
    "DetectorRun",
    "HeadDetector",
    "HeadSearch",
    "Query",
    "check_dataset",
    "crop_samples",
    "head_queries",
    "detector_mismatch",
    "load_detector",
    "query_label",
    "record_detector",
    "train_detector",
    "validate_detector",
]
