"""``reid detect train`` and ``reid detect run``: the head detector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import DeviceOpt, QuietOpt, app, user_errors

detect_app = typer.Typer(
    help="Find salamander heads in whole photos (YOLOv5, trained on your own boxes).",
    no_args_is_help=True,
)
app.add_typer(detect_app, name="detect")


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
    from reid.detect.training import DetectorTrainOptions, train_detector

    options = DetectorTrainOptions(
        architecture=architecture, weights=weights, epochs=epochs, imgsz=imgsz, batch=batch,
        patience=patience, crop_margin=margin, conf=conf, device=device, seed=seed,
    )  # fmt: skip
    run = train_detector(data, out, options)
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
    from reid.detect.cutout import cut_heads
    from reid.detect.detector import load_detector
    from reid.errors import ReIDError
    from reid.pipeline import expand_photos

    if conf is not None and not 0 < conf < 1:
        raise ReIDError(f"--conf {conf} is outside 0-1.")
    photos = expand_photos(images)
    if not photos:
        raise ReIDError("No photos to search: the folders given hold no images.")
    detector = load_detector(model, device=device, conf=conf)
    crops = cut_heads(detector, photos, crop_out, best=best, overlay=overlay, progress=not quiet)
    for line in crops.problems:
        typer.echo(line, err=True)
    typer.echo(crops.summary())
