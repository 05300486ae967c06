"""`reid frames`: still frames from field videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import QuietOpt, app, user_errors


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
    quiet: QuietOpt = False,
) -> None:
    """Write FPS frames per second of each video, with a manifest of video, time and date.

    Frames of one video share a sighting, so training never splits them between train and
    test. A video that cannot be read is reported; the others go on (exit code 1 if any failed).
    """
    from reid.frames import extract_frames

    outcome = extract_frames(videos, out, fps=fps, individual=individual, progress=not quiet,
                             log=(lambda _m: None) if quiet else typer.echo)  # fmt: skip
    typer.echo(outcome.summary())
    if outcome.failed:
        raise typer.Exit(1)
