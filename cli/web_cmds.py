"""``reid serve`` (the citizen-science web app) and ``reid users add`` (its reviewers)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import DetectorOpt, DeviceOpt, GalleryArg, ModelOpt, app, user_errors

users_app = typer.Typer(help="Reviewer accounts of the web app (`reid serve`).",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(users_app, name="users")
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="The app's database and uploads (default: GALLERY/web)."),
]


@app.command()
@user_errors
def serve(
    gallery: GalleryArg,
    model: ModelOpt,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 opens it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(min=0, help="Identification threads (0: only queue the uploads).")
    ] = 1,
    batch: Annotated[int, typer.Option(min=1, help="Photos a worker identifies at once.")] = 16,
    data: DataOpt = None,
    detector: DetectorOpt = None,
    screen: Annotated[
        Path | None,
        typer.Option(help="A category run (`reid train` on native/hybrid labels) for the screen."),
    ] = None,
    scorer: Annotated[
        str | None, typer.Option(help="As `reid match --scorer` (default: auto).")
    ] = None,
    sites: Annotated[
        Path | None,
        typer.Option(help="Sites CSV: site,latitude,longitude[,catchment] (picked on the form)."),
    ] = None,
    alert_km: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Alert when a confirmed sighting is farther than this from every earlier one.",
        ),
    ] = 5.0,  # fmt: skip
    hybrid_level: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Alert at this screen probability of hybrid.")
    ] = 0.5,
    max_photos: Annotated[int, typer.Option(min=1, help="Photos per submission.")] = 10,
    max_mb: Annotated[float, typer.Option(min=0.1, help="Megabytes per photo.")] = 25.0,
    secure_cookies: Annotated[
        bool, typer.Option(help="Mark cookies Secure (when served behind HTTPS).")
    ] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Run the web app: volunteers submit photos, workers identify them in the background,
    reviewers (`reid users add`) confirm or correct them; decisions go into GALLERY through its
    own enroll and audit log."""
    import uvicorn

    from reid.web.app import create_app
    from reid.web.service import ServeSettings
    from reid.web.uploads import Limits

    settings = ServeSettings(
        gallery_dir=gallery, model=model, data_dir=data, workers=workers, batch=batch,
        device=device, detector=detector, screen=screen, scorer=scorer, sites=sites,
        alert_km=alert_km, hybrid_level=hybrid_level, secure_cookies=secure_cookies,
        limits=Limits(max_photos=max_photos, max_bytes=int(max_mb * 2**20)),
    )  # fmt: skip
    web = create_app(settings)
    if not any(u for u in web.state.service.db.query("SELECT name FROM users")):
        typer.secho(f"No reviewer yet: add one with `reid users add {gallery} NAME`.",
                    err=True, fg=typer.colors.YELLOW)  # fmt: skip
    if host not in ("127.0.0.1", "localhost", "::1") and not secure_cookies:
        typer.secho(f"Listening on {host} without --secure-cookies: serve it behind an HTTPS "
                    "proxy and add --secure-cookies, or passwords and sessions travel in clear.",
                    err=True, fg=typer.colors.YELLOW)  # fmt: skip
    typer.echo(f"Serving {gallery} on http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(web, host=host, port=port, log_level="warning", server_header=False)


@users_app.command("add")
@user_errors
def users_add(
    gallery: GalleryArg,
    name: Annotated[str, typer.Argument(help="Reviewer's login name.")],
    role: Annotated[str, typer.Option(help="reviewer or admin.")] = "reviewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (scripts).")
    ] = False,
    data: DataOpt = None,
) -> None:
    """Create a reviewer (or reset their password); the password is stored argon2-hashed."""
    from reid.errors import ReIDError
    from reid.web.auth import add_user
    from reid.web.db import WebDB

    if not (gallery / "gallery.sqlite").is_file():
        raise ReIDError(f"{gallery} is not a gallery: enroll photos into it first.")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    db = WebDB((data or gallery / "web") / "web.sqlite")
    try:
        add_user(db, name, password, role)
    finally:
        db.close()
    typer.echo(f"Reviewer {name} ({role}) can log in to `reid serve {gallery}`.")
