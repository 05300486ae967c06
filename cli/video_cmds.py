"""`reid frames`: still frames from field videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import QuietOpt, app, user_errors


@app.command()
@user_errors
def frames(
    videos: Annotated[list[Path], typer.Argument(help="Video files (MP4, MOV, AVI, ...).")],
    out: Annotated[Path, typer.Option(help="Folder for the JPEG frames and manifest.csv.")],
    fps: Annotated[
        float, typer.Option(help="Frames kept per second of video (the study: 10).")
    ] = 10.0,
    individual: Annotated[
        str, typer.Option(help="Fill the manifest's individual column (one animal per video).")
    ] = "",
    utc_offset: Annotated[
        float | None,
        typer.Option(
            help="Hours from UTC of the survey's time zone, e.g. 9 for Japan (default: this "
            "computer's zone). Dates and times in the manifest are in that zone."
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Write FPS frames per second of each video, with a manifest of video, time and date.

    Frames of one video share a sighting, so training never splits them between train and
    test. A video that cannot be read is reported; the others go on (exit code 1 if any failed).
    """
    from datetime import timedelta, timezone

    from reid.errors import ReIDError
    from reid.io.frames import extract_frames

    if utc_offset is not None and not -14 <= utc_offset <= 14:
        raise ReIDError(f"--utc-offset {utc_offset} is not a time zone: give hours in -14..14.")
    tz = None if utc_offset is None else timezone(timedelta(hours=utc_offset))
    outcome = extract_frames(videos, out, fps=fps, individual=individual, tz=tz,
                             progress=not quiet,
                             log=(lambda _m: None) if quiet else typer.echo)  # fmt: skip
    typer.echo(outcome.summary())
    if outcome.failed:
        raise typer.Exit(1)
