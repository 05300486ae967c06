"""``reid gallery ...``: inspect and curate a gallery (info, list, show, rename, merge,
remove, export, reembed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from reid.cli.common import DeviceOpt, GalleryArg, ModelOpt, QuietOpt, UserOpt, app, user_errors

gallery_app = typer.Typer(help="Inspect and curate a gallery.", no_args_is_help=True)
app.add_typer(gallery_app, name="gallery")


@gallery_app.command("info")
@user_errors
def info_cmd(gallery: GalleryArg) -> None:
    """Counts, model fingerprint, index and calibration."""
    from reid.gallery import Gallery

    with Gallery.open(gallery) as g:
        typer.echo(json.dumps(g.info(), indent=2))


@gallery_app.command("list")
@user_errors
def list_cmd(gallery: GalleryArg) -> None:
    """Every individual with its number of photos and first/last date."""
    from reid.gallery import Gallery

    typer.echo(f"{'individual':<24} {'photos':>6}  {'first':<10}  {'last':<10}")
    with Gallery.open(gallery) as g:
        summaries = g.individuals()
    for s in summaries:
        typer.echo(f"{s.individual:<24} {s.num_images:>6}  {s.first_date:<10}  {s.last_date:<10}")


@gallery_app.command("show")
@user_errors
def show_cmd(gallery: GalleryArg, individual: str) -> None:
    """The photos of one individual."""
    from reid.gallery import Gallery

    with Gallery.open(gallery) as g:
        images = g.images(individual)
    for im in images:
        typer.echo(
            f"{im.image_id:>6}  {im.date:<10} {im.time:<5} {im.condition:<10} "
            f"{im.location:<12} {im.source_path}"
        )


@gallery_app.command("rename")
@user_errors
def rename_cmd(gallery: GalleryArg, old: str, new: str, user: UserOpt = None) -> None:
    """Give an individual another id."""
    from reid.gallery import Gallery

    with Gallery.open(gallery) as g:
        g.rename(old, new, user=user)
    typer.echo(f"renamed {old} -> {new}")


@gallery_app.command("merge")
@user_errors
def merge_cmd(gallery: GalleryArg, source: str, target: str, user: UserOpt = None) -> None:
    """Merge SOURCE into TARGET (one animal enrolled under two ids)."""
    from reid.gallery import Gallery

    with Gallery.open(gallery) as g:
        g.merge(source, target, user=user)
    typer.echo(f"merged {source} into {target}")


@gallery_app.command("remove")
@user_errors
def remove_cmd(
    gallery: GalleryArg,
    individual: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    user: UserOpt = None,
) -> None:
    """Remove an individual with its photos and vectors."""
    from reid.gallery import Gallery

    if not yes:
        typer.confirm(f"Remove {individual} and all its photos from {gallery}?", abort=True)
    with Gallery.open(gallery) as g:
        g.remove(individual, user=user)
    typer.echo(f"removed {individual}")


@gallery_app.command("export")
@user_errors
def export_cmd(
    gallery: GalleryArg, out: Annotated[Path, typer.Argument(help="CSV to write.")]
) -> None:
    """Sightings as CSV (individual, photo, date, time, location, observer ...)."""
    from reid.gallery import Gallery

    with Gallery.open(gallery) as g:
        typer.echo(f"wrote {g.export(out)}")


@gallery_app.command("reembed")
@user_errors
def reembed_cmd(
    gallery: GalleryArg,
    model: ModelOpt,
    local: Annotated[
        str,
        typer.Option(
            "--local",
            help="Re-extract every photo's local features with sift or xfeat; keep (default) "
            "leaves them as they are.",
        ),
    ] = "keep",
    user: UserOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Recompute every vector (and local features, with a local scorer) from the stored photos."""
    from reid.cli.gallery_cmds import local_option
    from reid.features.embedder import Embedder

    chosen = None if local == "keep" else local_option(local, allow_none=False)
    embedder = Embedder.from_run(model, device)
    reembed_gallery(
        gallery, embedder, user=user, quiet=quiet,
        local_scorer=chosen[0] if chosen else None, local_spec=chosen[1] if chosen else None,
    )  # fmt: skip


def reembed_gallery(
    gallery: Path,
    embedder: Any,
    *,
    user: str | None = None,
    quiet: bool = False,
    local_scorer: Any = None,
    local_spec: dict[str, Any] | None = None,
) -> None:
    """Re-embed ``gallery`` with ``embedder`` and, when ``local_scorer`` is given (a
    ``reid.matching.local`` LocalScorer: ``extract(image) -> LocalFeatures``, ``fingerprint``,
    ``max_side``), re-extract every photo's local features in the same transaction and record
    ``local_spec`` (``{"name", "settings"}``) to rebuild the scorer."""
    from reid.errors import ReIDError
    from reid.gallery import Gallery

    def embed(paths: list[Path], boxes: list | None = None):
        result = embedder.embed_paths(paths, boxes, progress=not quiet, desc="re-embedding")
        if result.failures:
            e = result.failures[0]
            raise ReIDError(
                f"Stored photo {e.path} cannot be read ({e.reason}); nothing was "
                "changed. Restore the file or remove its individual, then retry."
            )
        return result.embeddings

    local_fn = local_extractor(local_scorer) if local_scorer is not None else None
    local_fp = local_scorer.fingerprint if local_scorer is not None else None
    with Gallery.open(gallery) as g:
        n = g.reembed(
            embed,
            model_fingerprint=embedder.fingerprint,
            user=user,
            local_fn=local_fn,
            local_fingerprint=local_fp,
            local_scorer=local_spec,
        )
        stats = g.local_stats()
    typer.echo(
        f"re-embedded {n} photos with model {embedder.fingerprint}; the calibration was "
        f"cleared: run `reid calibrate {gallery}`"
    )
    if local_scorer is not None:
        typer.echo(
            f"local features of {stats.num_with_features}/{stats.num_images} photos "
            f"re-extracted with {stats.fingerprint}"
        )


def local_extractor(scorer: Any) -> Callable[[list[Path], list], list[bytes]]:
    """The ``local_fn(paths, boxes)`` callback of ``Gallery.reembed`` for a local scorer: each
    stored photo is cut to its box and resized exactly as enroll and match prepare a region
    (:func:`reid.matching.local.prepare_region`), then extracted; the gallery stores
    ``LocalFeatures.to_bytes()`` as opaque bytes."""
    from reid.errors import ReIDError
    from reid.matching.local import prepare_region

    def extract(paths: list[Path], boxes: list) -> list[bytes]:
        blobs = []
        for path, box in zip(paths, boxes, strict=True):
            try:
                region = prepare_region(path, box, scorer.max_side)
            except ReIDError as exc:
                raise ReIDError(
                    f"Stored photo {exc}; nothing was changed. Restore the file or remove its "
                    "individual, then retry."
                ) from exc
            blobs.append(scorer.extract(region).to_bytes())
        return blobs

    return extract
