"""``reid enroll``, ``reid match`` and ``reid calibrate``; ``reid gallery ...`` is in
``gallery_admin_cmds``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from reid.cli.common import (
    BestOpt,
    DetectorOpt,
    DeviceOpt,
    GalleryArg,
    ModelOpt,
    QuietOpt,
    UserOpt,
    app,
    detector_or_none,
    photos_or_fail,
    user_errors,
)


@app.command()
@user_errors
def enroll(
    gallery: GalleryArg,
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Photos/folders of ONE individual (with --individual), or one "
            "folder-per-individual "
            "tree, or one CSV manifest."
        ),
    ],
    model: ModelOpt,
    individual: Annotated[str | None, typer.Option(help="The individual all SOURCES show.")] = None,
    date: Annotated[str, typer.Option(help="Photo date (with --individual).")] = "",
    location: Annotated[str, typer.Option(help="Where (with --individual).")] = "",
    observer: Annotated[str, typer.Option(help="Who took the photos.")] = "",
    index: Annotated[
        str, typer.Option(help="faiss factory for a new gallery: Flat, HNSW32, IVF1024,Flat ...")
    ] = "Flat",
    detector: DetectorOpt = None,
    best: BestOpt = False,
    user: UserOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Add photos of known individuals to a gallery (created if absent).

    With --detector each photo is cut to its head first and the box is stored; a photo where no
    head is found (or several, without --best) is reported and not enrolled."""
    from reid.errors import ReIDError
    from reid.features.embedder import Embedder
    from reid.io.datasets import ImageRecord, read_dataset
    from reid.pipeline import enroll_samples, expand_photos, open_gallery

    if individual is not None:
        samples = [
            ImageRecord(path=p, individual=individual, date=date, location=location)
            for p in expand_photos(sources)
        ]
    elif len(sources) == 1:
        samples = read_dataset(sources[0])
    else:
        raise ReIDError(
            "Several sources need --individual ID (they all show that individual); "
            "for many individuals give one folder-per-individual tree or one manifest."
        )
    embedder = Embedder.from_run(model, device)
    heads = detector_or_none(detector, device, model)
    with open_gallery(gallery, embedder, create=True, index_factory=index) as g:
        outcome = enroll_samples(
            g,
            samples,
            embedder,
            observer=observer,
            user=user,
            progress=not quiet,
            detector=heads,
            best=best,
        )
        info = g.info()
    typer.echo(outcome.summary())
    typer.echo(
        f"{gallery}: {info['num_individuals']} individuals, {info['num_images']} photos"
        + (
            ""
            if info["calibrated"]
            else f"; uncalibrated: run `reid calibrate {gallery}` before trusting NEW decisions"
        )
    )


@app.command()
@user_errors
def match(
    gallery: GalleryArg,
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos to identify.")],
    model: ModelOpt,
    top_k: Annotated[int, typer.Option(min=1, help="Candidates per photo.")] = 5,
    format: Annotated[str, typer.Option(help="table, csv or json.")] = "table",
    sheet: Annotated[
        Path | None,
        typer.Option(help="Write a PNG per photo: the query beside its top-k gallery photos."),
    ] = None,
    enroll_new: Annotated[
        bool, typer.Option(help="Enroll photos decided NEW as new individuals with generated ids.")
    ] = False,
    detector: DetectorOpt = None,
    best: BestOpt = False,
    screen: Annotated[
        Path | None,
        typer.Option(
            help="A screen run (configs/hybrid.yaml): report each photo's category, e.g. "
            "native / hybrid, beside its match."
        ),
    ] = None,
    user: UserOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Say which known individual each photo shows, or NEW.

    With --detector each head found is identified on its own (photo.jpg#1, #2 ...; only the
    most confident with --best); a photo with no head gets the row "no head found"."""
    from reid.features.embedder import Embedder
    from reid.pipeline import MatchOptions, match_photos, open_gallery, write_match_sheets

    paths = photos_or_fail(photos, "match", format)
    embedder = Embedder.from_run(model, device)
    options = MatchOptions(
        top_k=top_k,
        enroll_new=enroll_new,
        user=user,
        progress=not quiet,
        detector=detector_or_none(detector, device, model),
        best=best,
        screener=_screener(screen, device),
    )
    with open_gallery(gallery, embedder, create=False) as g:
        rows = match_photos(g, paths, embedder, options)
        # The answer first: a sheet that cannot be written must not hide it (or the ids that
        # --enroll-new has already committed).
        typer.echo({"table": _table, "csv": _csv, "json": _json}[format](rows, g.info()))
        if sheet is not None:
            write_match_sheets(rows, sheet, g)
            typer.echo(f"match sheets: {sheet}", err=format != "table")


def _screener(screen: Path | None, device: str):
    """The screen run named by --screen, checked to be a category screen; or None."""
    if screen is None:
        return None
    from reid.explain.screen import check_screen
    from reid.features.embedder import Embedder

    screener = Embedder.from_run(screen, device)
    check_screen(screener, screen)
    return screener


def _calibration_line(info: dict[str, Any]) -> str:
    if not info["calibrated"]:
        return (
            "UNCALIBRATED gallery: decisions are the nearest individual and NEW is never said; "
            f"run `reid calibrate {info['directory']}`."
        )
    c = info["calibration"]
    line = (
        f"threshold {c['threshold']:.3f}: target false-match rate {c['target_fmr']:.1%}, "
        f"measured {c['fmr']:.1%} on {c['num_unknown_trials']} unknown trials; known photos "
        f"identified above threshold {c['tpr']:.1%} (calibrated {c['at']})"
    )
    pool = c.get("unknown_pool", "unspecified")
    if pool == "never-trained":
        return (
            f"{line}; the never-seen role was played by {c['num_unknown_individuals']} "
            "individuals the model never trained on"
        )
    why = (
        "individuals the model was trained on played the never-seen role"
        if pool == "trained"
        else "calibrated without --model, so trained individuals may have played newcomers"
    )
    return (
        f"{line}; OPTIMISTIC: {why}, and real newcomers score higher "
        "(docs/gallery.md: open-set calibration)"
    )


def _row_dict(row, info: dict[str, Any]) -> dict[str, Any]:
    from reid.detect.detector import NO_HEAD

    m = row.match
    return {
        "photo": str(row.path),
        "head": row.head or None,
        "heads": row.heads if row.head else None,
        "box": list(row.box) if row.box is not None else None,
        "head_confidence": round(row.confidence, 4) if row.confidence is not None else None,
        "screen": max(row.screen, key=row.screen.__getitem__) if row.screen else None,
        "screen_probabilities": (
            {k: round(v, 4) for k, v in row.screen.items()} if row.screen else None
        ),
        "decision": m.decision if m else ("NO HEAD" if row.error == NO_HEAD else "ERROR"),
        "score": round(m.score, 4) if m else None,
        "threshold": m.threshold if m else None,
        "calibrated": info["calibrated"],
        "enrolled_as": row.enrolled_as or None,
        "error": row.error or None,
        "candidates": [
            {
                "individual": c.individual,
                "score": round(c.score, 4),
                "gallery_photo": str(c.image_path),
            }
            for c in (m.candidates if m else [])
        ],
    }


def _table(rows, info: dict[str, Any]) -> str:
    lines = [_calibration_line(info), ""]
    header = f"{'photo':<32} {'decision':<16} {'score':>6} {'thresh':>6}  candidates"
    lines += [header, "-" * len(header)]
    for row in rows:
        d = _row_dict(row, info)
        if row.match is None:
            lines.append(f"{row.label:<32} {d['decision']:<16} {'':>6} {'':>6}  {d['error']}")
            continue
        thresh = f"{d['threshold']:.3f}" if d["threshold"] is not None else "uncal."
        decision = d["decision"] + (f" -> {d['enrolled_as']}" if d["enrolled_as"] else "")
        cands = "  ".join(f"{c['individual']}:{c['score']:.3f}" for c in d["candidates"])
        if d["screen"]:
            cands = f"[{d['screen']} {d['screen_probabilities'][d['screen']]:.2f}]  {cands}"
        lines.append(f"{row.label:<32} {decision:<16} {d['score']:>6.3f} {thresh:>6}  {cands}")
        if d["error"]:  # e.g. an --enroll-new that was refused
            lines.append(f"{'':<32} {'':<16} {'':>6} {'':>6}  {d['error']}")
    return "\n".join(lines)


def _csv(rows, info: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "photo",
            "head",
            "box",
            "decision",
            "score",
            "threshold",
            "calibrated",
            "target_fmr",
            "measured_fmr",
            "calibration",
            "enrolled_as",
            "error",
            "candidates",
            "screen",
            "screen_probability",
        ]
    )
    cal = info["calibration"] if info["calibrated"] else {}
    for row in rows:
        d = _row_dict(row, info)
        writer.writerow(
            [
                d["photo"],
                d["head"] or "",
                ",".join(map(str, d["box"])) if d["box"] else "",
                d["decision"],
                d["score"],
                d["threshold"],
                d["calibrated"],
                cal.get("target_fmr", ""),
                cal.get("fmr", ""),
                _pool_word(info),
                d["enrolled_as"] or "",
                d["error"] or "",
                ";".join(f"{c['individual']}:{c['score']}" for c in d["candidates"]),
                d["screen"] or "",
                d["screen_probabilities"][d["screen"]] if d["screen"] else "",
            ]
        )
    return buf.getvalue().rstrip("\n")


def _pool_word(info: dict[str, Any]) -> str:
    """uncalibrated | honest (never-trained newcomers) | optimistic."""
    if not info["calibrated"]:
        return "uncalibrated"
    return "honest" if info["calibration"].get("unknown_pool") == "never-trained" else "optimistic"


def _json(rows, info: dict[str, Any]) -> str:
    return json.dumps(
        {
            "gallery": info["directory"],
            "calibrated": info["calibrated"],
            "calibration": info["calibration"],
            "note": _calibration_line(info),
            "matches": [_row_dict(r, info) for r in rows],
        },
        indent=2,
    )


@app.command()
@user_errors
def calibrate(
    gallery: GalleryArg,
    target_fmr: Annotated[
        float,
        typer.Option(help="Largest acceptable share of never-seen animals matched to a known one."),
    ] = 0.05,
    score: Annotated[
        str | None, typer.Option(help="How an individual is scored: max (best photo) or topk_mean.")
    ] = None,
    k: Annotated[int | None, typer.Option(help="Photos averaged by topk_mean.")] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            envvar="REID_MODEL",
            help="The gallery's model run: its training individuals are then kept out of the "
            "never-seen role, which only never-trained individuals can play honestly.",
        ),
    ] = None,
    user: UserOpt = None,
) -> None:
    """Measure the NEW-individual threshold on the gallery (leave-one-individual-out)."""
    from reid.features.checkpoint import read_classes
    from reid.gallery import Gallery

    trained = None
    with Gallery.open(gallery) as g:
        if model is not None:
            trained, fingerprint = read_classes(model)
            g.check_model(fingerprint)  # another model's classes would mislabel every individual
        g.calibrate(
            target_fmr=target_fmr,
            score_mode=score,
            score_k=k,
            user=user,
            trained_individuals=trained,
        )
        typer.echo(_calibration_line(g.info()))
