"""Pieces every page shares: rendering with the visitor's CSRF token, the session checks of
reviewer routes, and the error pages (a sentence, never a stack trace or a server path)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from reid.web import auth
from reid.web.service import Service

log = logging.getLogger("reid.web")
EXPIRED = "The form has expired or was not sent from this site: reload the page and send it again."


class NeedLogin(Exception):
    """A reviewer route was asked for without a session."""


def page(templates: Jinja2Templates, request: Request, template: str, status: int = 200,
          **context: Any) -> HTMLResponse:  # fmt: skip
    svc: Service = request.app.state.service
    sess = _session(request)
    cookie, token = auth.anonymous_token(svc.secret, request.cookies.get(auth.CSRF_COOKIE))
    context.update(user=sess, csrf=sess["csrf"] if sess else token)
    response = templates.TemplateResponse(request, template, context, status_code=status)
    if cookie != request.cookies.get(auth.CSRF_COOKIE):
        set_cookie(response, svc, auth.CSRF_COOKIE, cookie)
    return response


def set_cookie(response: Response, svc: Service, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict",
                        secure=svc.settings.secure_cookies, path="/")  # fmt: skip


def check_public_csrf(request: Request, form: Any) -> None:
    """A public form (submission, login) carries the visitor's token: the anonymous one, or
    the session's when a reviewer is logged in (pages then show that one)."""
    svc: Service = request.app.state.service
    cookie = request.cookies.get(auth.CSRF_COOKIE)
    sess = _session(request)
    sent = form.get("csrf_token")
    if not (
        (cookie and auth.tokens_equal(sent, auth.anonymous_token(svc.secret, cookie)[1]))
        or (sess and auth.tokens_equal(sent, sess["csrf"]))
    ):
        raise HTTPException(403, EXPIRED)


def _session(request: Request) -> dict[str, Any] | None:
    """The visitor's live session (looked up once per request), or None."""
    if not hasattr(request.state, "session"):
        svc: Service = request.app.state.service
        request.state.session = auth.session_of(svc.db, request.cookies.get(auth.SESSION_COOKIE))
    return request.state.session


def require_reviewer(request: Request) -> dict[str, Any]:
    sess = _session(request)
    if sess is None:
        raise NeedLogin()
    if sess["role"] not in auth.ROLES:
        raise HTTPException(403, "Your account may not review.")
    return sess


async def reviewer_form(request: Request) -> tuple[dict[str, Any], Any]:
    sess = require_reviewer(request)
    form = await request.form(max_files=0, max_fields=100)
    if not auth.tokens_equal(form.get("csrf_token"), sess["csrf"]):
        raise HTTPException(403, EXPIRED)
    return sess, form


def add_error_handlers(app: FastAPI, templates: Jinja2Templates) -> None:
    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin):
        if request.method in ("GET", "HEAD"):
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query
                                                else ""))  # fmt: skip
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return error_page(templates, request, 401, "Log in as a reviewer first.")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        return error_page(templates, request, 404, "There is no such page.")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        text = exc.detail if isinstance(exc.detail, str) else "The request was refused."
        return error_page(templates, request, exc.status_code, text)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_page(
            templates,
            request,
            500,
            "Something went wrong on the server; it is logged. Try again, or tell the survey team.",
        )


def error_page(templates: Jinja2Templates, request: Request, status: int, text: str) -> Response:
    svc: Service = request.app.state.service
    for folder, name in ((svc.settings.data_dir, "the app's data folder"),
                         (svc.settings.gallery_dir, "the gallery")):  # fmt: skip
        text = text.replace(f"gallery {folder}", name).replace(str(folder), name)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"error": text}, status_code=status)
    try:
        return page(templates, request, "error.html", status=status, message=text)
    except Exception:  # the error page itself failed (e.g. the database is gone)
        return Response(text, status_code=status, media_type="text/plain")


__all__ = [
    "NeedLogin",
    "add_error_handlers",
    "check_public_csrf",
    "error_page",
    "page",
    "require_reviewer",
    "reviewer_form",
    "set_cookie",
]
