"""``reid histories`` and ``reid estimate``: from a gallery's sightings to population figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import GalleryArg, app, user_errors

MODELS = ("chapman", "schnabel", "m0", "mt", "mb", "mh2", "chao", "mh", "cjs", "all")


@app.command()
@user_errors
def histories(
    gallery: GalleryArg,
    occasion: Annotated[
        str,
        typer.Option(
            help="day, week or month of each photo's date, or a survey-session CSV "
            "(session,start,end[,site]) whose sessions are the occasions."
        ),
    ] = "day",
    out: Annotated[Path, typer.Option(help="Capture-history CSV to write.")] = Path(
        "histories.csv"
    ),
    group_by: Annotated[
        str | None,
        typer.Option(
            help="'site' (the place of each individual's first sighting) or a CSV "
            "individual,<group>, e.g. each individual's native/hybrid category."
        ),
    ] = None,
    mark: Annotated[Path | None, typer.Option(help="Also write a Program MARK .inp file.")] = None,
    marked: Annotated[
        Path | None, typer.Option(help="Also write a CSV for R's marked/RMark (a ch column).")
    ] = None,
) -> None:
    """Individual x occasion 0/1 capture histories from a gallery's sightings."""
    from reid.ecology.histories import write_csv, write_inp, write_marked_csv
    from reid.ecology.sightings import build_histories, read_groups, sightings_of_gallery
    from reid.errors import ReIDError

    sightings = sightings_of_gallery(gallery)
    if not sightings:
        raise ReIDError(f"{gallery}: the gallery holds no photos, so no sightings")
    if occasion not in ("day", "week", "month") and not Path(occasion).is_file():
        raise ReIDError(f"--occasion {occasion!r} is neither day, week, month nor a session file")
    group_of, group_name = None, ""
    if group_by == "site":
        group_of, group_name = {}, "site"
        for s in sorted(sightings, key=lambda s: (not s.date, s.date)):  # dated ones first
            group_of.setdefault(s.individual, s.location)
    elif group_by:
        group_of, group_name = read_groups(group_by)
    h, left = build_histories(sightings, occasion, group_of=group_of, group_name=group_name)
    if len(h.ids) == 0:
        raise ReIDError(
            f"{gallery}: none of its {len(sightings)} photos has a date (the "
            "images' date field is empty and the photos carry no EXIF date); "
            "enroll with --date or a manifest 'date' column"
        )
    write_csv(h, out)
    typer.echo(
        f"{out}: {len(h.ids)} individuals x {len(h.occasions)} occasions, "
        f"{int(h.matrix.sum())} captures"
    )
    if mark is not None:
        write_inp(h, mark, title=f"reid histories of {gallery}")
        typer.echo(f"{mark}: Program MARK input")
    if marked is not None:
        write_marked_csv(h, marked)
        typer.echo(f"{marked}: for R's marked (read.csv(f, colClasses = c(ch = 'character')))")
    if left:
        typer.echo(f"{len(left)} sighting(s) left out:")
        for item in left[:20]:
            typer.echo(f"  {item.sighting.individual} {item.sighting.photo}: {item.reason}")
        if len(left) > 20:
            typer.echo(f"  ... and {len(left) - 20} more")


@app.command()
@user_errors
def estimate(
    histories_file: Annotated[
        Path, typer.Argument(metavar="HISTORIES", help="Capture-history CSV or MARK .inp file.")
    ],
    model: Annotated[
        str,
        typer.Option(
            help=f"One of {', '.join(MODELS)}: mh fits mh2 and chao, cjs fits phi(.)p(.) and "
            "phi(t)p(t), all fits every model these histories allow."
        ),
    ] = "all",
    format_: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    by_group: Annotated[bool, typer.Option(help="One estimate per group as well.")] = False,
) -> None:
    """Population size (closed models, with an AIC table) and survival (CJS) from capture
    histories. Closed models use the full likelihood, as Program MARK and CAPTURE do."""
    from reid.ecology.histories import read_histories
    from reid.ecology.report import estimates_for, render
    from reid.errors import ReIDError

    if model not in MODELS:
        raise ReIDError(f"--model {model!r} is not one of {', '.join(MODELS)}")
    if format_ not in ("table", "csv", "json"):
        raise ReIDError(f"--format {format_!r} is not one of table, csv, json")
    h = read_histories(histories_file)
    parts = [("all", h)]
    if by_group and len(h.group_labels) > 1:
        parts += [(g, h.subset(g)) for g in h.group_labels]
    results = [(name, estimates_for(part.matrix, model)) for name, part in parts]
    if format_ == "json":
        typer.echo(
            json.dumps(
                {
                    name: [r.to_dict() if hasattr(r, "to_dict") else r for r in rs]
                    for name, rs in results
                },
                indent=2,
            )
        )
    else:
        typer.echo(render(results, format_))


@app.command()
@user_errors
def dwca(
    gallery: GalleryArg,
    out: Annotated[Path, typer.Option(help="Darwin Core Archive (.zip) to write.")] = Path(
        "sightings_dwca.zip"
    ),
    scientific_name: Annotated[
        str, typer.Option(help="The species, as Darwin Core's scientificName.")
    ] = "Andrias japonicus",
    title: Annotated[str, typer.Option(help="Dataset title (eml.xml).")] = "",
    creator: Annotated[str, typer.Option(help="Dataset creator and contact (eml.xml).")] = "",
    sites: Annotated[
        Path | None,
        typer.Option(help="CSV site,latitude,longitude: coordinates of the named places."),
    ] = None,
) -> None:
    """Export a gallery's sightings as a Darwin Core Archive (Occurrence core, meta.xml,
    eml.xml): one occurrence per photo, organismID the individual."""
    from reid.ecology.dwca import occurrences_of_gallery, read_sites, write_dwca
    from reid.errors import ReIDError

    occurrences = occurrences_of_gallery(gallery)
    if not occurrences:
        raise ReIDError(f"{gallery}: the gallery holds no photos, so no occurrences")
    places = read_sites(sites) if sites else {}
    write_dwca(
        occurrences,
        out,
        scientific_name=scientific_name,
        creator=creator,
        title=title or f"Sightings of individually identified {scientific_name}",
        sites=places,
        dataset_id=Path(gallery).resolve().name,
    )
    dated = sum(bool(o.date) for o in occurrences)
    typer.echo(
        f"{out}: {len(occurrences)} occurrences of "
        f"{len({o.individual for o in occurrences})} individuals ({dated} dated)"
    )
