"""``reid enroll``, ``reid match`` and ``reid calibrate``; ``reid gallery ...`` is in
``gallery_admin_cmds``."""

from __future__ import annotations

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
from reid.cli.match_output import FORMATS, calibration_line, fused_summary, scored_view


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
    local: Annotated[
        str,
        typer.Option(
            "--local",
            help="Local features stored per photo for re-ranking (`reid match --scorer "
            "fused`): sift (default: cheap, rotation invariant, needs no extra model), xfeat "
            "or none.",
        ),
    ] = "sift",
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
    local_scorer = local_option(local, allow_none=True)
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
            local=local_scorer,
        )
        info = g.info()
    typer.echo(outcome.summary())
    stats = info["local_features"]
    typer.echo(
        f"{gallery}: {info['num_individuals']} individuals, {info['num_images']} photos"
        + (
            f" ({stats['num_with_features']} with {stats['fingerprint']} local features)"
            if stats and stats["fingerprint"]
            else ""
        )
        + (
            ""
            if info["calibrated"]
            else f"; uncalibrated: run `reid calibrate {gallery}` before trusting NEW decisions"
        )
    )


def local_option(name: str, *, allow_none: bool) -> tuple[Any, dict] | None:
    """(scorer, spec) for ``--local NAME`` (``none``: None, where allowed); one sentence for
    an unknown name."""
    from reid.errors import ReIDError
    from reid.matching.fused import scorer_spec
    from reid.matching.local import SCORERS

    valid = sorted(SCORERS) + (["none"] if allow_none else [])
    if name not in valid:
        raise ReIDError(f"--local {name!r} is not one of {', '.join(valid)}.")
    return None if name == "none" else scorer_spec(name)


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
    scorer: Annotated[
        str | None,
        typer.Option(
            "--scorer",
            help="auto (default): what `reid calibrate` measured best on this gallery, "
            "separately for naming the individual and for calling NEW; global (the "
            "embedding's cosine); fused (cosine + local features, calibrated P(same)); or "
            "sift / xfeat alone. Without a fused calibration, auto is global.",
        ),
    ] = None,
    shortlist: Annotated[
        int | None,
        typer.Option(min=1, help="Gallery photos re-ranked per query (default: calibrated, 50)."),
    ] = None,
    user: UserOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Say which known individual each photo shows, or NEW.

    With --detector each head found is identified on its own (photo.jpg#1, #2 ...; only the
    most confident with --best); a photo with no head gets the row "no head found". With a
    local scorer the nearest gallery photos are re-ranked by their verified local matches."""
    from reid.features.embedder import Embedder
    from reid.pipeline import (
        MatchOptions,
        match_photos,
        open_gallery,
        resolve_scorer,
        write_match_sheets,
    )

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
        scorer=scorer,
        shortlist=shortlist,
    )
    with open_gallery(gallery, embedder, create=False) as g:
        options, choice = resolve_scorer(g, options)
        rows = match_photos(g, paths, embedder, options)
        view = scored_view(g.info(), choice)
        # The answer first: a sheet that cannot be written must not hide it (or the ids that
        # --enroll-new has already committed).
        typer.echo(FORMATS[format](rows, view))
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
    shortlist: Annotated[
        int,
        typer.Option(
            min=1, help="With local features: gallery photos re-ranked per query (kept for match)."
        ),
    ] = 50,
    user: UserOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Measure the NEW-individual threshold on the gallery (leave-one-individual-out).

    When the gallery holds local features, also calibrate fused matching: each photo's nearest
    gallery photos are scored by the local scorer, every score is calibrated to P(same) and
    fused, and the threshold is measured on the fused probability."""
    from reid.features.checkpoint import read_classes
    from reid.gallery import Gallery
    from reid.matching.fused_calibrate import NotEnoughPairs, calibrate_fused

    trained = None
    with Gallery.open(gallery) as g:
        if model is not None:
            trained, fingerprint = read_classes(model)
            g.check_model(fingerprint)  # another model's classes would mislabel every individual
        fused, why = None, ""
        if g.local_fingerprint is not None:
            try:
                fused = calibrate_fused(g, target_fmr=target_fmr, trained_individuals=trained,
                                        shortlist=shortlist, progress=not quiet)  # fmt: skip
            except NotEnoughPairs as exc:
                why = str(exc)
        g.calibrate(
            target_fmr=target_fmr,
            score_mode=score,
            score_k=k,
            user=user,
            trained_individuals=trained,
            fused=fused.to_dict() if fused is not None else ({} if why else None),
            expect_generation=fused.generation if fused is not None else None,
        )
        info = g.info()
    typer.echo(_calibrate_report(info, fused, why))


def _calibrate_report(info: dict[str, Any], fused: Any, why: str) -> str:
    """The cosine calibration line, then the fused one with rank-1 of both (or why fusion was
    not calibrated)."""
    from reid.matching.roles import MARGIN

    lines = [calibration_line(info)]
    if fused is not None:
        lines.append(calibration_line({**info, "calibration": fused_summary(fused, "fused")}))
        cosine, fit = info["calibration"], fused.fits["fused"]
        lines.append(
            f"rank-1 on the gallery: fused {fit.rank1:.1%}, cosine {cosine['rank1']:.1%}; fused "
            f"calibration fitted on {fused.num_pairs['same']} same-individual and "
            f"{fused.num_pairs['different']} different-individual pairs ({fused.pair_pool})"
        )
        if fused.roles is not None:
            lines.append(
                f"reid match (--scorer auto) will name individuals by {fused.roles.rank_by} and "
                f"call NEW by {fused.roles.decide_by}: the best of each on these trials, the "
                f"global score keeping a job unless another beats it by more than {MARGIN}"
            )
    elif why:
        lines.append(why)
    return "\n".join(lines)
