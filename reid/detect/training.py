"""Training and validating the YOLOv5 head detector on the user's own boxes (YOLO format).

:func:`train_detector` writes a detector folder that :func:`reid.detect.detector.load_detector`
reads::

    DIR/detector.pt      the best weights (ultralytics checkpoint)
    DIR/detector.json    architecture, input size, crop margin, confidence threshold, the
                         validation mAP50 / mAP50-95, training time, the data it learnt from
    DIR/data.yaml        the dataset file as trained on (paths made absolute)
    DIR/train/           ultralytics' own run folder (results.csv, last.pt, args.yaml)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reid.detect.detector import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_CONF,
    DETECTOR_FILE,
    META_FILE,
    keep_torch_threads,
    ultralytics_device,
    ultralytics_offline,
)
from reid.errors import ReIDError
from reid.io.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class DetectorTrainOptions:
    """How to train a head detector.

    ``architecture`` is an ultralytics model yaml (random initial weights); ``weights`` an
    optional local .pt to start from instead (nothing is downloaded). ``crop_margin`` and
    ``conf`` are not used in training: they are kept with the detector for cropping later.
    """

    architecture: str | Path = DEFAULT_ARCHITECTURE
    weights: str | Path | None = None
    epochs: int = 100
    imgsz: int = 320  # input size in pixels
    batch: int = 16
    patience: int = 50  # epochs without gain before stopping
    crop_margin: float = 0.1  # 0.1 adds 10 % around a box
    conf: float = DEFAULT_CONF
    device: str = "auto"
    seed: int = 0
    workers: int = 2

    def check(self) -> None:
        """Raise a ReIDError naming the first bad value."""
        if self.epochs < 1 or self.imgsz < 32 or self.batch < 1:
            raise ReIDError(
                f"epochs, imgsz and batch must be positive (got {self.epochs}, {self.imgsz}, "
                f"{self.batch})."
            )
        if not 0 <= self.crop_margin <= 2:
            raise ReIDError(
                f"--margin {self.crop_margin} is outside 0-2 (0.1 adds 10 % around the box)."
            )
        if self.weights is not None and not Path(self.weights).is_file():
            raise ReIDError(f"Weights file {self.weights} does not exist (nothing is downloaded).")


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
            _check_split_folder(data, split, folder)
    return spec


def _check_split_folder(data: Path, split: str, folder: Path) -> None:
    """A split's image folder exists, holds images, and has its labels folder beside it."""
    ultralytics_offline()
    from ultralytics.data.utils import img2label_paths

    if not folder.exists():
        raise ReIDError(f"Dataset file {data}: the {split} folder {folder} does not exist.")
    if folder.is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*")):
        raise ReIDError(f"Dataset file {data}: the {split} folder {folder} has no images.")
    labels = Path(img2label_paths([str(folder / "_.jpg")])[0]).parent  # ultralytics' rule
    if folder.is_dir() and not labels.is_dir():
        raise ReIDError(
            f"Dataset file {data}: {split} images in {folder} have no labels folder "
            f"{labels} (YOLO keeps labels/ beside images/, one .txt per image)."
        )


def train_detector(
    data: str | Path, out_dir: str | Path, options: DetectorTrainOptions | None = None
) -> DetectorRun:
    """Train a YOLOv5 head detector on the YOLO-format boxes of ``data`` (a data.yaml) and write
    a detector folder in ``out_dir``. Returns the validation precision, recall, mAP50 and
    mAP50-95 of the best epoch and the training time."""
    opts = options or DetectorTrainOptions()
    opts.check()
    out_dir = Path(out_dir)
    spec = check_dataset(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = out_dir / "data.yaml"
    resolved.write_text(yaml.safe_dump(spec, sort_keys=False))
    start = time.perf_counter()
    trainer = _fit(resolved, out_dir, opts)
    seconds = time.perf_counter() - start
    best = Path(trainer.best)
    if not best.is_file():
        raise ReIDError(f"Training wrote no weights in {best.parent}; see the log above.")
    metrics = validate_detector(best, resolved, imgsz=opts.imgsz, device=opts.device)
    _replace_file(out_dir / DETECTOR_FILE, lambda tmp: shutil.copyfile(best, tmp))
    meta = {
        "format": "reid-detector/1",
        "architecture": str(Path(opts.weights).name if opts.weights else opts.architecture),
        "start_weights": str(opts.weights) if opts.weights else None,
        "imgsz": opts.imgsz,
        "crop_margin": opts.crop_margin,
        "conf": opts.conf,
        "epochs": opts.epochs,
        "epochs_run": int(trainer.epoch) + 1,
        "best_epoch": int(getattr(trainer, "best_epoch", -1)),
        "train_seconds": round(seconds, 1),
        "metrics": metrics,
        "data": str(Path(data).resolve()),
        "device": ultralytics_device(opts.device),
        "ultralytics": ultralytics_offline().__version__,
    }
    _replace_file(out_dir / META_FILE, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
    return DetectorRun(out_dir, out_dir / DETECTOR_FILE, metrics, seconds, meta["epochs_run"])


def _fit(data_yaml: Path, out_dir: Path, opts: DetectorTrainOptions) -> Any:
    """Run ultralytics' trainer offline (no AMP check, no plots); returns the trainer."""
    import torch

    ultralytics = ultralytics_offline()
    model = ultralytics.YOLO(str(opts.weights or opts.architecture), task="detect")
    with keep_torch_threads() as threads:
        # every core for the forward and backward passes (ultralytics would leave one idle)
        model.add_callback("on_pretrain_routine_end", lambda _: torch.set_num_threads(threads))
        model.train(
            data=str(data_yaml.resolve()),
            epochs=opts.epochs,
            imgsz=opts.imgsz,
            batch=opts.batch,
            patience=opts.patience,
            device=ultralytics_device(opts.device),
            workers=opts.workers,
            seed=opts.seed,
            deterministic=True,
            pretrained=bool(opts.weights),
            amp=False,  # ultralytics' AMP self-check downloads yolo26n.pt on a GPU
            plots=False,  # plots fetch a font from the internet
            project=str(out_dir.resolve()),
            name="train",
            exist_ok=True,
            verbose=False,
        )
    return model.trainer


def _replace_file(path: Path, write) -> None:
    """Write ``path`` through a temporary file so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def validate_detector(
    weights: str | Path,
    data: str | Path,
    *,
    imgsz: int = 320,
    device: str = "auto",
    split: str = "val",
) -> dict[str, float]:
    """Box precision, recall, mAP50 and mAP50-95 of ``weights`` on a split of ``data``."""
    ultralytics = ultralytics_offline()
    model = ultralytics.YOLO(str(weights), task="detect")
    with tempfile.TemporaryDirectory() as scratch, keep_torch_threads():  # val writes a folder
        res = model.val(
            data=str(data), imgsz=imgsz, split=split, device=ultralytics_device(device),
            plots=False, verbose=False, batch=16, workers=0, project=scratch, name="val",
        )  # fmt: skip
    return {
        "precision": round(float(res.box.mp), 4),
        "recall": round(float(res.box.mr), 4),
        "mAP50": round(float(res.box.map50), 4),
        "mAP50-95": round(float(res.box.map), 4),
    }


__all__ = [
    "DetectorRun",
    "DetectorTrainOptions",
    "check_dataset",
    "train_detector",
    "validate_detector",
]
