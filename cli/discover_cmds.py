"""``reid discover``: photos of animals not in the gallery, grouped into proposed individuals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import (
    BestOpt,
    DetectorOpt,
    DeviceOpt,
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
def discover(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of a survey batch.")],
    gallery: Annotated[Path, typer.Option(help="Gallery of the known individuals.")],
    model: ModelOpt,
    out: Annotated[
        Path, typer.Option(help="Folder for groups.csv, groups.json and sheets/.")
    ] = Path("discovery"),
    prefix: Annotated[
        str, typer.Option(help="Start of the proposed ids (default new-<date>-).")
    ] = "",
    enroll: Annotated[
        bool,
        typer.Option(
            help="Enroll every proposed group as a new individual now (after a review, prefer "
            "`reid enroll GALLERY OUT/groups.csv` with the names you checked)."
        ),
    ] = False,
    detector: DetectorOpt = None,
    best: BestOpt = False,
    user: UserOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Group photos that match no known individual into proposed new individuals.

    Each photo is matched first; those called NEW are grouped by their pairwise scores (the
    gallery's calibrated fused P(same) where `reid calibrate` fitted one on enrolled local
    features, the cosine otherwise), cut at the calibrated NEW threshold, so two photos of one
    newcomer become one proposed individual, not two. OUT/groups.csv is a manifest for
    `reid enroll`."""
    from reid.discovery import discover_photos, write_discovery
    from reid.features.embedder import Embedder
    from reid.io.datasets import read_dataset
    from reid.matching.fused import gallery_scorer
    from reid.pipeline import MatchOptions, enroll_samples, open_gallery

    paths = photos_or_fail(photos, "discover")
    embedder = Embedder.from_run(model, device)
    options = MatchOptions(
        progress=not quiet, user=user, detector=detector_or_none(detector, device, model), best=best
    )
    with open_gallery(gallery, embedder, create=False) as g:
        found = discover_photos(g, paths, embedder, options, prefix=prefix)
        typer.echo(
            f"{len(paths)} photo(s): {len(found.known)} of known individuals, "
            f"{len(found.newcomers)} new, {len(found.unusable)} unusable"
        )
        for row in found.unusable:
            typer.echo(f"  unusable {row.label}: {row.error}")
        if not found.newcomers:
            typer.echo("no new individuals proposed")
            return
        written = write_discovery(found, out, g)
        typer.echo(
            f"{len(found.groups)} proposed new individual(s) by {found.kind} (cut "
            f"{found.threshold:.3f}):"
        )
        for name, group in zip(found.names, found.groups, strict=True):
            cohesion = "one photo" if group.cohesion is None else f"cohesion {group.cohesion:.2f}"
            weak = (
                ""
                if group.weakest_score is None
                else (
                    f", weakest {found.newcomers[group.weakest].path.name} "
                    f"({group.weakest_score:.2f})"
                )
            )
            typer.echo(f"  {name}: {len(group.members)} photo(s), {cohesion}{weak}")
        typer.echo(
            f"manifest: {written['manifest']}  report: {written['report']}  sheets: "
            f"{out / 'sheets'}"
        )
        if enroll:
            local = None
            if g.local_fingerprint is not None:  # the new photos get the same local features
                current = gallery_scorer(g)
                local = (current, g.local_scorer_spec or {"name": current.name, "settings": {}})
            outcome = enroll_samples(
                g,
                read_dataset(written["manifest"]),
                embedder,
                user=user,
                progress=not quiet,
                local=local,
            )
            typer.echo(outcome.summary())


@app.command()
@user_errors
def survey(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of one survey.")],
    gallery: Annotated[Path, typer.Option(help="Calibrated gallery (fused, for error-aware N).")],
    model: ModelOpt,
    occasion: Annotated[
        str, typer.Option(help="day, week, month or a survey-session CSV (session,start,end).")
    ] = "day",
    dates: Annotated[
        Path | None,
        typer.Option(help="CSV path,date for photos whose EXIF carries no date."),
    ] = None,
    estimator: Annotated[str, typer.Option("--estimator", help="m0, mt, mb, mh2 or chao.")] = "m0",
    draws: Annotated[int, typer.Option(min=2, help="Imputed identifications.")] = 50,
    out: Annotated[Path, typer.Option(help="Folder for histories, report and plot.")] = Path(
        "survey"
    ),
    seed: int = 0,
    detector: DetectorOpt = None,
    best: BestOpt = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Population size from one survey's photos, with identification error carried in.

    Every photo is identified by grouping the batch's pairwise P(same) at the calibrated
    threshold; capture histories over the occasions give N (naive: the grouping taken as
    certain); multiple imputation of the uncertain identifications gives the error-aware N,
    whose interval widens by as much as the identifications are in doubt; and N is shown
    against the grouping threshold across the calibrated false-match rates 1-20 %."""
    import csv as csv_

    from reid.discovery import plot_threshold_curve, survey_estimate
    from reid.ecology.histories import CaptureHistories, write_csv
    from reid.ecology.uncertain import histories_of
    from reid.errors import ReIDError
    from reid.features.embedder import Embedder
    from reid.pipeline import MatchOptions, open_gallery

    paths = photos_or_fail(photos, "survey")
    given: dict[str, str] = {}
    if dates is not None:
        if not dates.is_file():
            raise ReIDError(f"{dates}: no such dates file")
        with dates.open(newline="", encoding="utf-8-sig") as f:
            for i, row in enumerate(csv_.DictReader(f), start=2):
                if not row.get("path") or "date" not in row:
                    raise ReIDError(f"{dates}: row {i}: a dates file needs path and date columns")
                p = Path(row["path"])
                given[str(p if p.is_absolute() else dates.parent / p)] = row["date"]
    embedder = Embedder.from_run(model, device)
    options = MatchOptions(
        progress=not quiet, detector=detector_or_none(detector, device, model), best=best
    )
    with open_gallery(gallery, embedder, create=False) as g:
        s = survey_estimate(
            g,
            paths,
            embedder,
            options,
            occasion=occasion,
            dates=given,
            model=estimator,
            draws=draws,
            seed=seed,
        )
    out.mkdir(parents=True, exist_ok=True)
    matrix = histories_of(s.labels, s.occasion_of, len(s.occasions))
    ids = [f"animal-{k + 1:03d}" for k in range(len(matrix))]
    write_csv(CaptureHistories(matrix, ids, s.occasions), out / "histories.csv")
    n = s.naive.n_hat
    typer.echo(
        f"{len(s.rows)} photos over {len(s.occasions)} occasions, {len(matrix)} "
        f"individuals identified by {s.kind} (cut {s.threshold:.3f})"
    )
    typer.echo(f"N ({s.naive.model}, identification taken as certain): {_n(n)}")
    report = {
        "photos": len(s.rows),
        "occasions": s.occasions,
        "score": s.kind,
        "threshold": s.threshold,
        "naive": s.naive.to_dict(),
        "curve": s.curve,
        "left_out": [[str(p), why] for p, why in s.left_out],
    }
    if s.aware is not None:
        a = s.aware.n_hat
        typer.echo(
            f"N, identification error carried in ({len(s.aware.draws)} imputations): "
            f"{_n(a)}; identification adds "
            f"{s.aware.between_share:.0%} of its variance"
        )
        report["error_aware"] = {
            "n_hat": a.estimate,
            "lcl": a.lcl,
            "ucl": a.ucl,
            "draws": s.aware.draws,
            "identification_share": s.aware.between_share,
        }
    else:
        typer.echo(
            "no error-aware N: it needs calibrated P(same); enroll with --local sift "
            "and run `reid calibrate` on the gallery"
        )
    if s.curve:
        typer.echo("N against the grouping threshold:")
        for r in s.curve:
            est = "not estimable" if r["n_hat"] is None else _n(r)
            typer.echo(
                f"  false-match rate {r['fmr']:>5.0%}: {r['individuals']:.0f} individuals, N {est}"
            )
        plot_threshold_curve(s.curve, out / "threshold.png", "N against the grouping threshold")
    (out / "survey.json").write_text(json.dumps(report, indent=2, default=str))
    for p, why in s.left_out:
        typer.echo(f"  left out {p}: {why}")
    typer.echo(f"histories: {out / 'histories.csv'}  report: {out / 'survey.json'}")


def _n(n) -> str:
    """``96.3 [86.6, 114.7]`` from a Parameter or a curve row; no interval at a boundary."""
    get = n.get if isinstance(n, dict) else lambda k: getattr(n, "estimate" if k == "n_hat" else k)
    lo, hi = get("lcl"), get("ucl")
    interval = (
        f" [{lo:.1f}, {hi:.1f}]"
        if lo is not None and hi is not None
        else (" (no interval: the likelihood is at its boundary, e.g. every animal seen again)")
    )
    return f"{get('n_hat'):.1f}{interval}"
