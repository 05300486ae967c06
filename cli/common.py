"""Pieces shared by the CLI modules: the Typer app, option types, error handling."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Open-set re-identification of individual animals from photos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Config override section.key=value, e.g. --set train.lr=3e-4 (repeatable)."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="YAML config (e.g. configs/paper.yaml); defaults are the paper's settings."
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
ModelOpt = Annotated[
    Path,
    typer.Option(
        "--model",
        envvar="REID_MODEL",
        help="Run directory from `reid train` (or its model.pt); env REID_MODEL.",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
GalleryArg = Annotated[Path, typer.Argument(help="Gallery directory.")]
UserOpt = Annotated[str | None, typer.Option(help="Name for the audit log (default: login).")]


def user_errors(func):
    """Turn a user's mistake into one sentence on stderr and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from reid.errors import ReIDError
        from reid.gallery.errors import GalleryError

        try:
            return func(*args, **kwargs)
        except (ReIDError, GalleryError) as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None

    return wrapper


DetectorOpt = Annotated[
    Path | None,
    typer.Option(
        "--detector",
        help="Head detector from `reid detect train` (its folder or detector.pt): each photo is "
        "cut to the detected head first, by the study's crop rule.",
    ),
]
BestOpt = Annotated[
    bool,
    typer.Option(
        "--best",
        help="With --detector: use only the most confident head of a photo that shows several.",
    ),
]


def photos_or_fail(photos: list[Path], verb: str, fmt: str | None = None) -> list[Path]:
    """The photos given (folders expanded), after checking ``--format``; one sentence if none."""
    from reid.errors import ReIDError
    from reid.pipeline import expand_photos

    if fmt is not None and fmt not in ("table", "csv", "json"):
        raise ReIDError(f"--format {fmt!r} is not one of table, csv, json.")
    paths = expand_photos(photos)
    if not paths:
        raise ReIDError(f"No photos to {verb}: the folders given hold no images.")
    return paths


def detector_or_none(detector: Path | None, device: str, run: Path | None = None):
    """The head detector named by --detector, or None; with ``run``, warn on stderr when the
    run's model learnt from photos cut otherwise (another detector, or none)."""
    from reid.detect.detector import detector_mismatch, load_detector

    heads = load_detector(detector, device=device) if detector is not None else None
    if run is not None and (warning := detector_mismatch(run, heads)):
        typer.secho(warning, err=True, fg=typer.colors.YELLOW)
    return heads
