"""``reid detect train`` and ``reid detect run``: the head detector."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import DeviceOpt, QuietOpt, app, user_errors

detect_app = typer.Typer(
    help="Find salamander heads in whole photos (YOLOv5, trained on your own boxes).",
    no_args_is_help=True,
)
app.add_typer(detect_app, name="detect")

DETECTIONS_COLUMNS = (
    "path", "photo", "head", "heads", "confidence", "x1", "y1", "x2", "y2", "box", "note",
)  # fmt: skip


@detect_app.command("train")
@user_errors
def train_cmd(
    data: Annotated[
        Path,
        typer.Option(
            help="YOLO data.yaml (labelImg / `reid synth --scenes` layout: images/ and labels/)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for detector.pt and detector.json.")],
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 100,
    imgsz: Annotated[
        int, typer.Option(min=32, help="Input size in pixels (320 is quick on a CPU).")
    ] = 320,
    batch: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
    architecture: Annotated[
        str, typer.Option(help="ultralytics model yaml: yolov5nu.yaml, yolov5su.yaml, ...")
    ] = "yolov5nu.yaml",
    weights: Annotated[
        Path | None,
        typer.Option(help="Local .pt to start from (nothing is ever downloaded)."),
    ] = None,
    margin: Annotated[
        float, typer.Option(help="Crop margin kept with the detector: 0.1 adds 10 % around a box.")
    ] = 0.1,
    conf: Annotated[
        float,
        typer.Option(help="Confidence below which a detection is ignored, kept with the detector."),
    ] = 0.5,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without gain.")] = 50,
    seed: int = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Train a YOLOv5 head detector on boxes in YOLO format; prints validation mAP50."""
    from reid.detect.detector import train_detector

    run = train_detector(
        data,
        out,
        architecture=architecture,
        weights=weights,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        patience=patience,
        crop_margin=margin,
        conf=conf,
        device=device,
        seed=seed,
    )
    m = run.metrics
    typer.echo(
        f"detector: {run.weights}; validation mAP50 {m['mAP50']:.3f}, mAP50-95 "
        f"{m['mAP50-95']:.3f}, precision {m['precision']:.3f}, recall {m['recall']:.3f}; "
        f"{run.epochs_run} epochs in {run.train_seconds / 60:.1f} min"
    )


@detect_app.command("run")
@user_errors
def run_cmd(
    model: Annotated[Path, typer.Argument(help="Detector folder (or its detector.pt).")],
    images: Annotated[list[Path], typer.Argument(help="Photos or folders of photos.")],
    crop_out: Annotated[Path, typer.Option(help="Folder for the head crops and detections.csv.")],
    conf: Annotated[
        float | None,
        typer.Option(help="Confidence threshold (default: the detector's, normally 0.5)."),
    ] = None,
    best: Annotated[
        bool, typer.Option("--best", help="Keep only the most confident head per photo.")
    ] = False,
    overlay: Annotated[
        bool, typer.Option(help="Also write each photo with its boxes drawn (overlays/*.png).")
    ] = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Cut the heads out of photos by the study's crop rule; detections.csv lists them all.

    Every photo gets a row: each head's box, confidence and crop region, or "no head found"."""
    from reid.detect.detector import NO_HEAD, load_detector
    from reid.errors import ImageLoadError, ReIDError
    from reid.io.images import load_image
    from reid.pipeline import expand_photos

    if conf is not None and not 0 < conf < 1:
        raise ReIDError(f"--conf {conf} is outside 0-1.")
    photos = expand_photos(images)
    if not photos:
        raise ReIDError("No photos to search: the folders given hold no images.")
    detector = load_detector(model, device=device, conf=conf)
    crop_out.mkdir(parents=True, exist_ok=True)
    found = detector.detect_paths(photos, progress=not quiet)
    rows, names, crops, missing = [], set(), 0, 0
    for photo, heads in zip(photos, found, strict=True):
        if isinstance(heads, ImageLoadError) or not heads:
            why = heads.reason if isinstance(heads, ImageLoadError) else NO_HEAD
            typer.echo(f"{photo}: {why}", err=True)
            rows.append(["", str(photo), "", 0, "", "", "", "", "", "", why])
            missing += 1
            continue
        heads = heads[:1] if best else heads
        img = load_image(photo)
        stem = _unique(photo.stem, names)
        for k, d in enumerate(heads, start=1):
            name = f"{stem}_head{k}.jpg" if len(heads) > 1 else f"{stem}.jpg"
            _save_atomically(img.crop(d.crop), crop_out / name)
            crops += 1
            rows.append(
                [name, str(photo), k, len(heads), f"{d.confidence:.4f}", *d.box,
                 ",".join(map(str, d.crop)), ""]
            )  # fmt: skip
        if overlay:
            _draw_overlay(img, heads, crop_out / "overlays" / f"{stem}.png")
    table = crop_out / "detections.csv"
    tmp = table.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(DETECTIONS_COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, table)
    typer.echo(
        f"{crops} head crops from {len(photos) - missing} of {len(photos)} photos in {crop_out}; "
        f"{missing} without a head; list: {table}"
    )


def _unique(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3`` ... when two photos in different folders share it."""
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


def _save_atomically(img, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="JPEG", quality=95)
    os.replace(tmp, path)


def _draw_overlay(img, heads, path: Path) -> None:
    """The photo with each head's box (red) and crop region (yellow), numbered by confidence."""
    from PIL import ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = img.copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(img.size) / 300))
    for k, d in enumerate(heads, start=1):
        draw.rectangle(d.crop, outline=(255, 220, 0), width=max(1, width // 2))
        draw.rectangle(d.box, outline=(255, 0, 0), width=width)
        draw.text((d.box[0] + 3, d.box[1] + 2), f"#{k} {d.confidence:.2f}", fill=(255, 0, 0))
    tmp = path.with_name(path.name + ".tmp")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)
