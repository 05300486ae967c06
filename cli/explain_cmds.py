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
    from tqdm.auto import tqdm

    from reid.detect.detector import Query, head_queries
    from reid.errors import ImageLoadError
    from reid.explain.gradcam import Explainer, plot_explanation, plot_match_explanation
    from reid.features.checkpoint import load_checkpoint
    from reid.features.embedder import Embedder
    from reid.gallery import Gallery

    paths = photos_or_fail(photos, "explain")
    loaded = load_checkpoint(run)
    explainer = Explainer(loaded, device=device)
    column = loaded.config.data.label_column
    queries = (
        head_queries(detector_or_none(detector, device, run), paths, best=best, progress=not quiet)
        if detector is not None
        else [Query(p) for p in paths]
    )
    g = Gallery.open(gallery) if gallery is not None else None
    try:
        if g is not None:
            g.check_model(loaded.fingerprint, loaded.embedding_dim)
            embedder = Embedder(loaded, device)
            boxes = {im.image_id: im.box for im in g.images()}
        written = 0
        for q in tqdm(queries, desc="explaining", unit="photo", disable=quiet):
            if q.error:
                typer.echo(f"{q.path}: {q.error}", err=True)
                continue
            try:
                image = explainer.prepare(q.path, q.box)
            except ImageLoadError as exc:
                typer.echo(f"{q.path}: {exc.reason}", err=True)
                continue
            stem = q.label.replace("#", "_head")
            [exp] = explainer.explain_class(image[None])
            plot_explanation(
                q.path, exp, out / f"{Path(stem).stem}_{column}.png", box=q.box,
                title=f"{column}: {exp.label}  (probability {exp.score:.3f})",
            )  # fmt: skip
            written += 1
            if g is None:
                continue
            vec = embedder.embed_arrays(image[None])[0]
            [m] = g.identify(vec, model_fingerprint=loaded.fingerprint, top_k=1)
            if not m.candidates:
                continue
            top = m.candidates[0]
            ref_box = boxes.get(top.image_id)
            pair = explainer.explain_match(
                image, explainer.prepare(top.image_path, ref_box), label=top.individual
            )
            threshold = f"{m.threshold:.3f}" if m.threshold is not None else "uncalibrated"
            plot_match_explanation(
                q.path, top.image_path, pair, out / f"{Path(stem).stem}_match.png",
                query_box=q.box, gallery_box=ref_box,
                title=f"decision: {m.decision}  (nearest {top.individual}, similarity "
                f"{top.score:.3f}, threshold {threshold})",
            )  # fmt: skip
            written += 1
    finally:
        if g is not None:
            g.close()
    typer.echo(f"wrote {written} heat maps to {out}")
