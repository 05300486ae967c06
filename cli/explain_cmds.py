"""``reid screen`` (category probabilities, e.g. native / hybrid) and ``reid explain``
(Grad-CAM heat maps for a decision and for a match)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import (
    BestOpt,
    DetectorOpt,
    DeviceOpt,
    QuietOpt,
    app,
    detector_or_none,
    photos_or_fail,
    user_errors,
)

RunArg = Annotated[Path, typer.Argument(help="Run directory from `reid train` (or its model.pt).")]
PhotosArg = Annotated[list[Path], typer.Argument(help="Photos or folders of photos.")]


@app.command()
@user_errors
def screen(
    run: Annotated[
        Path,
        typer.Argument(help="A screen run: trained on a category column (configs/hybrid.yaml)."),
    ],
    photos: PhotosArg,
    format: Annotated[str, typer.Option(help="table, csv or json.")] = "table",
    detector: DetectorOpt = None,
    best: BestOpt = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Each photo's category probabilities (e.g. native / hybrid) and the likeliest category."""
    from reid.explain.screen import check_screen, screen_photos
    from reid.features.embedder import Embedder

    paths = photos_or_fail(photos, "screen", format)
    embedder = Embedder.from_run(run, device)
    column = check_screen(embedder, run)
    heads = detector_or_none(detector, device, run)
    rows = screen_photos(embedder, paths, detector=heads, best=best, progress=not quiet)
    classes = embedder.classes
    if format == "json":
        typer.echo(json.dumps({"run": str(run), "category": column, "rows": [
            {"photo": str(r.path), "label": r.label, "box": list(r.box) if r.box else None,
             "decision": r.decision, "probabilities": r.probabilities, "error": r.error or None}
            for r in rows]}, indent=2))  # fmt: skip
    elif format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["photo", "label", "box", column, *(f"p_{c}" for c in classes), "error"])
        for r in rows:
            p = r.probabilities or {}
            box = ",".join(map(str, r.box)) if r.box else ""
            probs = [f"{p[c]:.4f}" if c in p else "" for c in classes]
            writer.writerow([r.path, r.label, box, r.decision, *probs, r.error])
        typer.echo(buf.getvalue().rstrip("\n"))
    else:
        head = f"{'photo':<32} {column:<12} " + " ".join(f"{c:>10}" for c in classes)
        lines = [head, "-" * len(head)]
        for r in rows:
            if r.probabilities is None:
                lines.append(f"{r.label:<32} {'ERROR':<12} {r.error}")
                continue
            probs = " ".join(f"{r.probabilities[c]:>10.3f}" for c in classes)
            lines.append(f"{r.label:<32} {r.decision:<12} {probs}")
        typer.echo("\n".join(lines))


@app.command()
@user_errors
def explain(
    run: RunArg,
    photos: PhotosArg,
    out: Annotated[Path, typer.Option(help="Folder for the PNG heat maps.")],
    gallery: Annotated[
        Path | None,
        typer.Option(
            help="Also explain each photo's match: what made it similar to the top gallery "
            "photo, on both photos."
        ),
    ] = None,
    detector: DetectorOpt = None,
    best: BestOpt = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Grad-CAM heat maps: which regions drove the classifier's decision (and the match)."""
    from reid.detect.heads import head_queries
    from reid.explain.gradcam import Explainer
    from reid.explain.heatmaps import write_heat_maps
    from reid.gallery import Gallery

    paths = photos_or_fail(photos, "explain")
    explainer = Explainer(run, device=device)
    heads = detector_or_none(detector, device, run) if detector is not None else None
    queries = head_queries(heads, paths, best=best, progress=not quiet)
    g = Gallery.open(gallery) if gallery is not None else None
    try:
        maps = write_heat_maps(explainer, queries, out, gallery=g, progress=not quiet)
    finally:
        if g is not None:
            g.close()
    for line in maps.problems:
        typer.echo(line, err=True)
    typer.echo(f"wrote {maps.written} heat maps to {out}")
