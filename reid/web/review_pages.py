"""The reviewers' pages: the queue, one photo with its candidates and pictures, the actions,
individual pages (rename, merge, sighting map) and alerts with their exports."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from reid.errors import ReIDError
from reid.web.pages import page, require_reviewer, reviewer_form
from reid.web.public import status_text
from reid.web.service import Service


def add_review_routes(app: FastAPI, svc: Service, templates: Jinja2Templates) -> None:
    from reid.web import pictures
    from reid.web.review import ReviewRefused, apply_review, edit_individual, proposed_group

    @app.get("/review", response_class=HTMLResponse)
    def queue(request: Request, done: int | None = None):
        require_reviewer(request)
        last = svc.db.photo(done) if done else None
        return page(templates, request, "queue.html", items=svc.db.pending_review(),
                     counts=svc.db.counts(), last=last)  # fmt: skip

    @app.get("/review/{photo_id}", response_class=HTMLResponse)
    def item(request: Request, photo_id: int):
        require_reviewer(request)
        photo = svc.db.photo(photo_id)
        if photo is None:
            raise HTTPException(404, f"There is no photo {photo_id}.")
        sub = svc.db.submission(photo["submission_id"])
        group, scored_by, known = [], "", []
        if photo["status"] == "review":
            with svc.open_gallery() as g:
                known = sorted(s.id for s in g.individuals())
                if (photo["result"] or {}).get("is_new"):
                    group, scored_by = proposed_group(svc, photo_id, g)
        return page(templates, request, "item.html", photo=photo, sub=sub, group=group,
                     scored_by=scored_by, known=known, status_text=status_text(photo))  # fmt: skip

    @app.post("/review/{photo_id}")
    async def act(request: Request, photo_id: int):
        sess, form = await reviewer_form(request)
        action = str(form.get("action") or "")
        if action == "assign" and not form.get("individual"):
            action = "confirm"
        try:
            group = [int(v) for v in form.getlist("group")]
        except ValueError:
            raise HTTPException(400, "The proposed group must list photo numbers.") from None
        try:
            await run_in_threadpool(
                apply_review, svc, photo_id, action, sess["user"],
                individual=str(form.get("individual") or ""),
                reason=str(form.get("reason") or "")[:500], group=group,
            )  # fmt: skip
        except ReviewRefused as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"/review?done={photo_id}", status_code=303)

    def _picture(photo_id: int, kind: str) -> Path:
        photo = svc.db.photo(photo_id)
        if photo is None:
            raise HTTPException(404, f"There is no photo {photo_id}.")
        if kind == "image":
            path = svc.upload_path(photo["stored_name"])  # browsers do not show HEIC:
            out = svc.results_dir / str(photo_id) / "photo.jpg"  # a JPEG copy for them
            return pictures.browser_copy(path, out) if path.is_file() else path
        if photo["result"] is None:
            raise HTTPException(404, f"Photo {photo_id} has not been identified.")
        with svc.picture_lock:
            draw = pictures.match_sheet if kind == "sheet" else pictures.gradcam_overlay
            try:
                return draw(svc, photo)
            except FileNotFoundError as exc:
                raise HTTPException(404, str(exc)) from None
            except ReIDError as exc:  # e.g. the stored photo is gone or unreadable
                raise HTTPException(404, f"No picture for photo {photo_id}: {exc}") from None

    @app.get("/photos/{photo_id}/{kind}")
    def photo_file(request: Request, photo_id: int, kind: str):
        require_reviewer(request)
        if kind not in ("image", "sheet.png", "gradcam.png"):
            raise HTTPException(404, "No such picture.")
        path = _picture(photo_id, kind.removesuffix(".png"))
        if not path.is_file():
            raise HTTPException(404, f"The file of photo {photo_id} is missing.")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/gallery/images/{image_id}")
    def gallery_image(request: Request, image_id: int):
        require_reviewer(request)
        with svc.open_gallery() as g:
            found = g.image(image_id)
        if found is None or not found.path.is_file():
            raise HTTPException(404, f"There is no gallery photo {image_id}.")
        shown = pictures.browser_copy(found.path, svc.results_dir / "gallery" /
                                      f"{image_id}.jpg")  # fmt: skip
        return FileResponse(shown, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/individuals", response_class=HTMLResponse)
    def individuals(request: Request):
        require_reviewer(request)
        with svc.open_gallery() as g:
            rows = g.individuals()
        return page(templates, request, "individuals.html", rows=rows)

    @app.get("/individuals/{name}", response_class=HTMLResponse)
    def individual(request: Request, name: str):
        require_reviewer(request)
        images = _images_of(svc, name)
        alerts = [a for a in svc.db.alerts() if a["individual"] == name]
        return page(templates, request, "individual.html", name=name, alerts=alerts,
                     images=sorted(images, key=lambda im: (im.date, im.time, im.image_id)),
                     placed=any(svc.sites.coordinates(im.location) for im in images))  # fmt: skip

    @app.post("/individuals/{name}")
    async def edit(request: Request, name: str):
        sess, form = await reviewer_form(request)
        try:
            now = await run_in_threadpool(edit_individual, svc, name, str(form.get("action")),
                                          str(form.get("other") or ""), sess["user"])  # fmt: skip
        except ReviewRefused as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"/individuals/{quote(now)}", status_code=303)

    @app.get("/individuals/{name}/map.png")
    def individual_map(request: Request, name: str):
        require_reviewer(request)
        images = _images_of(svc, name)
        with svc.picture_lock:
            png = pictures.sightings_map(name, [(im.date, im.location) for im in images],
                                         svc.sites)  # fmt: skip
        if png is None:
            raise HTTPException(404, f"No sighting of {name} has a place.")
        return Response(png, media_type="image/png")

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts_page(request: Request):
        require_reviewer(request)
        return page(templates, request, "alerts.html", alerts=svc.db.alerts())

    @app.get("/alerts.{fmt}")
    def alerts_export(request: Request, fmt: str):
        require_reviewer(request)
        rows = svc.db.alerts()
        if fmt == "json":
            return JSONResponse(rows)
        if fmt != "csv":
            raise HTTPException(404, "Alerts are exported as .csv or .json.")
        buf = io.StringIO()
        cols = ["id", "created_at", "kind", "individual", "photo_id", "message"]
        writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="alerts.csv"'},
        )


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula (OWASP's CSV-injection advice)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _images_of(svc: Service, name: str) -> list[Any]:
    from reid.gallery import GalleryError

    with svc.open_gallery() as g:
        try:
            return g.images(name)
        except GalleryError:
            raise HTTPException(404, f"There is no individual {name!r}.") from None


__all__ = ["add_review_routes"]
