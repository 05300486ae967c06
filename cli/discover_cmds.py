"""``reid discover``: photos of animals not in the gallery, grouped into proposed individuals."""

from __future__ import annotations

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
    gallery's calibrated fused P(same), or the cosine before `reid calibrate --local` fitted
    one), cut at the calibrated NEW threshold, so two photos of one newcomer become one
    proposed individual, not two. OUT/groups.csv is a manifest for `reid enroll`."""
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
