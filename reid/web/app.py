"""The FastAPI app for one gallery: public submission and receipt pages (``public``), the
reviewers' queue, individual pages and alerts (``review_pages``), server-rendered templates and
one small script (keyboard shortcuts), every asset served from the package, so it works offline
in a field station.

Safety: reviewer routes need a live session (GET: 303 to the login page; anything else: 401);
every form carries a CSRF token (403 without); a request larger than a whole submission may be
is refused (413), before it is read when it says its length; errors show a sentence, never a
stack trace (``pages``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from reid.web.pages import add_error_handlers
from reid.web.public import add_public_routes
from reid.web.review_pages import add_review_routes
from reid.web.service import ServeSettings, Service
from reid.web.uploads import megabytes
from reid.web.worker import Worker

HERE = Path(__file__).parent


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
    add_public_routes(app, svc, worker, templates)
    add_review_routes(app, svc, templates)
    add_error_handlers(app, templates)

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


__all__ = ["create_app"]
