"""The FastAPI app: public submission and receipt pages, the reviewers' queue, individual pages
and alerts. Server-rendered templates, one small script (keyboard shortcuts), every asset
served from the package, so it works offline in a field station.

Safety: reviewer routes need a live session (GET: 303 to the login page; anything else: 401);
every form carries a CSRF token (403 without); requests larger than a whole submission may be
are refused before they are read (413); errors show a sentence, never a stack trace.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets
import shutil
import threading
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date as Date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from reid.errors import ReIDError
from reid.web import auth
from reid.web.db import NewPhoto
from reid.web.service import ServeSettings, Service
from reid.web.uploads import UploadRefused, check_upload, megabytes, store_durably
from reid.web.worker import Worker

log = logging.getLogger("reid.web")
HERE = Path(__file__).parent
MAX_FIELD = {"observer": 100, "contact": 200, "notes": 1000, "site": 100}
MIN_FREE_BYTES = 512 * 2**20  # keep room for the gallery's own writes
DECODING = threading.BoundedSemaphore(2)


class NeedLogin(Exception):
    """A reviewer route was asked for without a session."""


class _TooLarge(Exception):
    """The request body passed the limit while it was being read."""


def _has_too_large(exc: BaseException) -> bool:
    if isinstance(exc, _TooLarge):
        return True
    inner = getattr(exc, "exceptions", None)  # an exception group (anyio wraps in one)
    return isinstance(inner, tuple) and any(_has_too_large(e) for e in inner)


class BodyLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` (413), by its Content-Length
    before reading and by counting when it is streamed without one."""

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        seen, started = 0, False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BaseException as exc:  # noqa: B036 - re-raised unless it is ours
            if not _has_too_large(exc) or started:
                raise
            await self._refuse(send)

    def _sentence(self) -> str:
        return (
            f"The upload is larger than the {megabytes(self.max_bytes)} a submission may have: "
            "send fewer or smaller photos."
        )

    async def _refuse(self, send: Callable) -> None:
        body = self._sentence().encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def create_app(settings: ServeSettings, *, service: Service | None = None) -> FastAPI:
    """The app for one gallery; identification workers start and stop with it."""
    svc = service or Service(settings)
    worker = Worker(svc, settings.workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.workers:
            worker.start()
        yield
        worker.stop()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service, app.state.worker = svc, worker
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _routes_public(app, svc, worker, templates)
    _routes_review(app, svc, templates)
    _error_handlers(app, templates)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[..., Awaitable[Response]]):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.url.path.startswith("/static/"):  # shared field-station computers
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_request_bytes)
    return app


# --------------------------------------------------------------------------- helpers
def _page(templates: Jinja2Templates, request: Request, template: str, status: int = 200,
          **context: Any) -> HTMLResponse:  # fmt: skip
    svc: Service = request.app.state.service
    sess = auth.session_of(svc.db, request.cookies.get(auth.SESSION_COOKIE))
    cookie, token = auth.anonymous_token(svc.secret, request.cookies.get(auth.CSRF_COOKIE))
    context.update(user=sess, csrf=sess["csrf"] if sess else token)
    response = templates.TemplateResponse(request, template, context, status_code=status)
    if cookie != request.cookies.get(auth.CSRF_COOKIE):
        _cookie(response, svc, auth.CSRF_COOKIE, cookie)
    return response


def _cookie(response: Response, svc: Service, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict",
                        secure=svc.settings.secure_cookies, path="/")  # fmt: skip


def _check_public_csrf(request: Request, form: Any) -> None:
    """A public form (submission, login) carries the visitor's token: the anonymous one, or
    the session's when a reviewer is logged in (pages then show that one)."""
    svc: Service = request.app.state.service
    cookie = request.cookies.get(auth.CSRF_COOKIE)
    sess = auth.session_of(svc.db, request.cookies.get(auth.SESSION_COOKIE))
    sent = form.get("csrf_token")
    if not (
        (cookie and auth.tokens_equal(sent, auth.anonymous_token(svc.secret, cookie)[1]))
        or (sess and auth.tokens_equal(sent, sess["csrf"]))
    ):
        raise HTTPException(403, "The form has expired or was not sent from this site: reload "
                                 "the page and send it again.")  # fmt: skip


def _reviewer(request: Request) -> dict[str, Any]:
    svc: Service = request.app.state.service
    sess = auth.session_of(svc.db, request.cookies.get(auth.SESSION_COOKIE))
    if sess is None:
        raise NeedLogin()
    if sess["role"] not in auth.ROLES:
        raise HTTPException(403, "Your account may not review.")
    return sess


async def _reviewer_form(request: Request) -> tuple[dict[str, Any], Any]:
    sess = _reviewer(request)
    form = await request.form(max_files=0, max_fields=100)
    if not auth.tokens_equal(form.get("csrf_token"), sess["csrf"]):
        raise HTTPException(403, "The form has expired or was not sent from this site: reload "
                                 "the page and send it again.")  # fmt: skip
    return sess, form


def _field(form: Any, name: str) -> str:
    value = form.get(name) or ""
    if not isinstance(value, str):
        raise HTTPException(400, f"Field {name!r} must be text.")
    value = value.strip()
    if len(value) > MAX_FIELD.get(name, 100):
        raise HTTPException(400, f"Field {name!r} is longer than {MAX_FIELD.get(name, 100)} "
                                 "characters.")  # fmt: skip
    return value


def _place(form: Any, svc: Service) -> tuple[str, float | None, float | None, str]:
    """(date, latitude, longitude, site) from the form; HTTP 400 naming a bad field."""
    day = _field(form, "date")
    if day:
        try:
            Date.fromisoformat(day)
        except ValueError:
            raise HTTPException(400, f"Date {day!r} is not a date like 2026-05-31.") from None
    lat_s, lon_s, site = _field(form, "latitude"), _field(form, "longitude"), _field(form, "site")
    if site and site not in svc.sites.where:
        raise HTTPException(400, f"Site {site!r} is not one of the configured sites.")
    if bool(lat_s) != bool(lon_s):
        raise HTTPException(400, "Give both latitude and longitude, or neither.")
    lat = lon = None
    if lat_s:
        try:
            lat, lon = float(lat_s), float(lon_s)
        except ValueError:
            raise HTTPException(
                400,
                f"{lat_s!r}, {lon_s!r} is not a latitude and longitude in "
                "decimal degrees (e.g. 35.0123, 133.4567).",
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise HTTPException(400, f"{lat}, {lon} is outside the range of latitude (-90..90) "
                                     "and longitude (-180..180).")  # fmt: skip
    return day, lat, lon, site


def status_text(photo: dict[str, Any]) -> str:
    """What a volunteer's receipt says about one photo."""
    status, result = photo["status"], photo["result"] or {}
    if status in ("queued", "working"):
        return "received, waiting for identification"
    if status == "unusable":
        return f"not usable: {photo['reason']}"
    if status == "review":
        if result.get("is_new"):
            return "possibly a new individual, awaiting review"
        return "matched, awaiting review"
    if photo["action"] == "reject":
        return f"not accepted by a reviewer: {photo['review_reason']}"
    if photo["action"] == "new":
        return f"recorded as a new individual: {photo['individual']}"
    return f"confirmed by a reviewer: {photo['individual']}"


def _safe_next(target: str | None) -> str:
    """A redirect target on this site only (no ``//host`` or scheme)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/review"


# --------------------------------------------------------------------------- public
def _routes_public(app: FastAPI, svc: Service, worker: Worker,
                   templates: Jinja2Templates) -> None:  # fmt: skip
    limits = svc.settings.limits
    throttle = auth.LoginThrottle()

    @app.get("/", response_class=HTMLResponse)
    def submit_form(request: Request):
        return _page(templates, request, "submit.html", sites=sorted(svc.sites.where),
                     limits=limits)  # fmt: skip

    @app.post("/submit")
    async def submit(request: Request):
        form = await request.form(max_files=limits.max_photos + 1, max_fields=20,
                                  max_part_size=64 * 1024)  # fmt: skip
        _check_public_csrf(request, form)
        files = [f for f in form.getlist("photos") if not isinstance(f, str)]
        if not files:
            raise HTTPException(400, "Choose at least one photo to send.")
        if len(files) > limits.max_photos:
            raise HTTPException(400, f"At most {limits.max_photos} photos may be sent at once; "
                                     f"this upload has {len(files)}.")  # fmt: skip
        day, lat, lon, site = _place(form, svc)
        who = {k: _field(form, k) for k in ("observer", "contact", "notes")}
        uploads = [(f.filename or "", await f.read(limits.max_bytes + 1)) for f in files]
        receipt = await run_in_threadpool(_store_submission, svc, uploads, (day, lat, lon, site),
                                          who)  # fmt: skip
        worker.wake()
        return RedirectResponse(f"/receipt/{receipt}", status_code=303)

    @app.get("/receipt/{receipt}")
    def receipt_page(request: Request, receipt: str, format: str = "html"):
        sub = svc.db.submission(receipt) if re.fullmatch(r"[\w-]{8,64}", receipt) else None
        if sub is None:
            raise HTTPException(404, "There is no submission with this receipt.")
        for p in sub["photos"]:
            p["status_text"] = status_text(p)
        if format == "json":
            return JSONResponse({
                "receipt": receipt, "created_at": sub["created_at"], "refused": sub["refused"],
                "photos": [{"name": p["original_name"], "status": p["status"],
                            "text": p["status_text"]} for p in sub["photos"]],
            })  # fmt: skip
        return _page(templates, request, "receipt.html", sub=sub)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/review"):
        return _page(templates, request, "login.html", next=_safe_next(next), failed=False)

    @app.post("/login")
    async def login(request: Request):
        form = await request.form(max_files=0, max_fields=10)
        _check_public_csrf(request, form)
        name, password = str(form.get("name") or "")[:64], str(form.get("password") or "")
        address = request.client.host if request.client else ""
        if not throttle.attempt(name, address):
            raise HTTPException(429, "Too many failed logins: wait 15 minutes and try again.")
        user = await run_in_threadpool(auth.check_password, svc.db, name, password[:1024])
        target = _safe_next(str(form.get("next") or ""))
        if user is None:
            return _page(templates, request, "login.html", status=401, next=target, failed=True)
        throttle.succeeded(name, address)
        response = RedirectResponse(target, status_code=303)
        _cookie(response, svc, auth.SESSION_COOKIE, auth.open_session(svc.db, user["name"]))
        return response

    @app.post("/logout")
    async def logout(request: Request):
        await _reviewer_form(request)
        auth.close_session(svc.db, request.cookies.get(auth.SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response


def _store_submission(svc: Service, uploads: list[tuple[str, bytes]],
                      place: tuple[str, float | None, float | None, str],
                      who: dict[str, str]) -> str:  # fmt: skip
    """Check each file, store the good ones durably and queue them in one transaction; refused
    files are listed on the receipt. Nothing is stored when every file is refused (400)."""
    day, lat, lon, site = place
    free = shutil.disk_usage(svc.uploads_dir).free
    if free < MIN_FREE_BYTES + sum(len(d) for _, d in uploads):
        log.error("refusing uploads: %d MB free in %s", free // 2**20, svc.uploads_dir)
        raise HTTPException(507, "The server is short of disk space and cannot store photos "
                                 "now; please try again later.")  # fmt: skip
    good, refused = [], []
    for name, data in uploads:
        try:
            with DECODING:  # a decoded 60 MP photo takes ~230 MB: bound how many at once
                good.append(check_upload(name, data, svc.settings.limits, svc.uploads_dir))
        except UploadRefused as exc:
            refused.append(str(exc))
    if not good:
        raise HTTPException(400, " ".join(refused))
    photos = []
    for p in good:
        store_durably(p, svc.uploads_dir)
        gps_lat, gps_lon = p.exif_gps if p.exif_gps and lat is None and not site else (lat, lon)
        photos.append(NewPhoto(p.original_name, p.stored_name, p.sha256, p.format, p.width,
                               p.height, day or p.exif_date, gps_lat, gps_lon, site))  # fmt: skip
    receipt = secrets.token_urlsafe(16)
    svc.db.add_submission(receipt, photos, refused=refused, **who)
    return receipt


# --------------------------------------------------------------------------- reviewers
def _routes_review(app: FastAPI, svc: Service, templates: Jinja2Templates) -> None:
    from reid.web import pictures
    from reid.web.review import ReviewRefused, apply_review, edit_individual, proposed_group

    @app.get("/review", response_class=HTMLResponse)
    def queue(request: Request, done: int | None = None):
        _reviewer(request)
        last = svc.db.photo(done) if done else None
        return _page(templates, request, "queue.html", items=svc.db.pending_review(),
                     counts=svc.db.counts(), last=last)  # fmt: skip

    @app.get("/review/{photo_id}", response_class=HTMLResponse)
    def item(request: Request, photo_id: int):
        _reviewer(request)
        photo = svc.db.photo(photo_id)
        if photo is None:
            raise HTTPException(404, f"There is no photo {photo_id}.")
        sub = svc.db.submission(photo["submission_id"])
        group = []
        if photo["status"] == "review":
            with svc.open_gallery() as g:
                threshold = g.threshold
                known = sorted(s.id for s in g.individuals())
            group = proposed_group(svc, photo_id, threshold)
        else:
            known = []
        return _page(templates, request, "item.html", photo=photo, sub=sub, group=group,
                     known=known, status_text=status_text(photo))  # fmt: skip

    @app.post("/review/{photo_id}")
    async def act(request: Request, photo_id: int):
        sess, form = await _reviewer_form(request)
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
            return svc.upload_path(photo["stored_name"])
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
        _reviewer(request)
        if kind not in ("image", "sheet.png", "gradcam.png"):
            raise HTTPException(404, "No such picture.")
        path = _picture(photo_id, kind.removesuffix(".png"))
        if not path.is_file():
            raise HTTPException(404, f"The file of photo {photo_id} is missing.")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/gallery/images/{image_id}")
    def gallery_image(request: Request, image_id: int):
        _reviewer(request)
        with svc.open_gallery() as g:
            found = [im for im in g.images() if im.image_id == image_id]
        if not found:
            raise HTTPException(404, f"There is no gallery photo {image_id}.")
        return FileResponse(found[0].path, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/individuals", response_class=HTMLResponse)
    def individuals(request: Request):
        _reviewer(request)
        with svc.open_gallery() as g:
            rows = g.individuals()
        return _page(templates, request, "individuals.html", rows=rows)

    @app.get("/individuals/{name}", response_class=HTMLResponse)
    def individual(request: Request, name: str):
        _reviewer(request)
        images = _images_of(svc, name)
        alerts = [a for a in svc.db.alerts() if a["individual"] == name]
        return _page(templates, request, "individual.html", name=name, alerts=alerts,
                     images=sorted(images, key=lambda im: (im.date, im.time, im.image_id)),
                     placed=any(svc.sites.coordinates(im.location) for im in images))  # fmt: skip

    @app.post("/individuals/{name}")
    async def edit(request: Request, name: str):
        sess, form = await _reviewer_form(request)
        try:
            now = await run_in_threadpool(edit_individual, svc, name, str(form.get("action")),
                                          str(form.get("other") or ""), sess["user"])  # fmt: skip
        except ReviewRefused as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"/individuals/{quote(now)}", status_code=303)

    @app.get("/individuals/{name}/map.png")
    def individual_map(request: Request, name: str):
        _reviewer(request)
        images = _images_of(svc, name)
        out = svc.results_dir / "maps" / f"{secrets.token_hex(8)}.png"
        with svc.picture_lock:
            path = pictures.sightings_map(name, [(im.date, im.location) for im in images],
                                          svc.sites, out)  # fmt: skip
        if path is None:
            raise HTTPException(404, f"No sighting of {name} has a place.")
        data = path.read_bytes()
        path.unlink()
        return Response(data, media_type="image/png")

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts_page(request: Request):
        _reviewer(request)
        return _page(templates, request, "alerts.html", alerts=svc.db.alerts())

    @app.get("/alerts.{fmt}")
    def alerts_export(request: Request, fmt: str):
        _reviewer(request)
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


# --------------------------------------------------------------------------- errors
def _error_handlers(app: FastAPI, templates: Jinja2Templates) -> None:
    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin):
        if request.method in ("GET", "HEAD"):
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query
                                                else ""))  # fmt: skip
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return _error(templates, request, 401, "Log in as a reviewer first.")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        return _error(templates, request, 404, "There is no such page.")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        text = exc.detail if isinstance(exc.detail, str) else "The request was refused."
        return _error(templates, request, exc.status_code, text)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(
            templates,
            request,
            500,
            "Something went wrong on the server; it is logged. Try again, or tell the survey team.",
        )


def _error(templates: Jinja2Templates, request: Request, status: int, text: str) -> Response:
    svc: Service = request.app.state.service
    for folder, name in ((svc.settings.data_dir, "the app's data folder"),
                         (svc.settings.gallery_dir, "the gallery")):  # fmt: skip
        text = text.replace(f"gallery {folder}", name).replace(str(folder), name)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"error": text}, status_code=status)
    try:
        return _page(templates, request, "error.html", status=status, message=text)
    except Exception:  # the error page itself failed (e.g. the database is gone)
        return Response(text, status_code=status, media_type="text/plain")


__all__ = ["create_app", "status_text"]
