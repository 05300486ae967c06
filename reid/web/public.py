"""The public pages: the submission form, the upload itself (checked, stored durably and
queued before the answer), receipts, login and logout."""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
from datetime import date as Date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from reid.web import auth
from reid.web.db import NewPhoto
from reid.web.pages import check_public_csrf, page, reviewer_form, set_cookie
from reid.web.service import Service
from reid.web.uploads import UploadRefused, check_upload, store_durably
from reid.web.worker import Worker

log = logging.getLogger("reid.web")
MAX_FIELD = {"observer": 100, "contact": 200, "notes": 1000, "site": 100}
MIN_FREE_BYTES = 512 * 2**20  # keep room for the gallery's own writes
DECODING = threading.BoundedSemaphore(2)


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


def add_public_routes(app: FastAPI, svc: Service, worker: Worker,
                   templates: Jinja2Templates) -> None:  # fmt: skip
    limits = svc.settings.limits
    throttle = auth.LoginThrottle()

    @app.get("/", response_class=HTMLResponse)
    def submit_form(request: Request):
        return page(templates, request, "submit.html", sites=sorted(svc.sites.where),
                     limits=limits)  # fmt: skip

    @app.post("/submit")
    async def submit(request: Request):
        form = await request.form(max_files=limits.max_photos + 1, max_fields=20,
                                  max_part_size=64 * 1024)  # fmt: skip
        check_public_csrf(request, form)
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
        return page(templates, request, "receipt.html", sub=sub)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/review"):
        return page(templates, request, "login.html", next=_safe_next(next), failed=False)

    @app.post("/login")
    async def login(request: Request):
        form = await request.form(max_files=0, max_fields=10)
        check_public_csrf(request, form)
        name, password = str(form.get("name") or "")[:64], str(form.get("password") or "")
        address = request.client.host if request.client else ""
        if not throttle.attempt(name, address):
            raise HTTPException(429, "Too many failed logins: wait 15 minutes and try again.")
        user = await run_in_threadpool(auth.check_password, svc.db, name, password[:1024])
        target = _safe_next(str(form.get("next") or ""))
        if user is None:
            return page(templates, request, "login.html", status=401, next=target, failed=True)
        throttle.succeeded(name, address)
        response = RedirectResponse(target, status_code=303)
        set_cookie(response, svc, auth.SESSION_COOKIE, auth.open_session(svc.db, user["name"]))
        return response

    @app.post("/logout")
    async def logout(request: Request):
        await reviewer_form(request)
        auth.close_session(svc.db, request.cookies.get(auth.SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.deleteset_cookie(auth.SESSION_COOKIE, path="/")
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


__all__ = ["add_public_routes", "status_text"]
