"""Builds the FastAPI app: routers by resource, error pages, static files, headers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from inspector.errors import (
    AlreadyExists,
    InspectorError,
    InvalidInput,
    InvalidReview,
    NotFound,
    NotReviewed,
    ReviewConflict,
    StoreConflict,
    StoreFailed,
    StoreUnavailable,
)
from inspector.review.auth import LoginRequired
from inspector.review.context import HERE, AppContext
from inspector.review.edge import edge_query
from inspector.review.hosts import allowed_hosts
from inspector.review.security import SecurityHeaders, request_id_of
from inspector.settings import Settings
from inspector.store import Store

log = logging.getLogger("inspector.review")


def build_app(settings: Settings, store: Store) -> FastAPI:
    """The app, holding the settings and store it was given."""
    from inspector.review.api import docs, export, golden, inspections, session, stats
    from inspector.review.pages import detail, login, numbers, queue
    from inspector.review.pages import media as media_page

    app = FastAPI(
        title="Inspector review",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(edge_query)],
    )
    app.state.ctx = AppContext.build(settings, store)
    for module in (session, inspections, golden, stats, export, docs):
        app.include_router(module.router, prefix="/api/v1")
    for page in (login, queue, detail, numbers, media_page):
        app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _handlers(app)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings.review))
    app.add_middleware(SecurityHeaders, failure_page=_failure_page(app.state.ctx))
    return app


def _wants_html(path: str) -> bool:
    return not path.startswith("/api/")


# Coded errors as HTTP statuses (the handler takes the nearest class in the exception's MRO).
# A 4xx says the error's own message (it is about the request); a 5xx says a fixed one.
_STATUS: tuple[tuple[type[InspectorError], int], ...] = (
    (NotFound, 404),
    (InvalidInput, 422),
    (InvalidReview, 422),
    (NotReviewed, 422),
    (ReviewConflict, 409),
    (AlreadyExists, 409),
    (StoreConflict, 409),
    (StoreUnavailable, 503),
    (StoreFailed, 500),
    (InspectorError, 500),
)
_FIXED = {
    StoreConflict: "a concurrent change got there first; reload and try again",
    StoreUnavailable: "the database is not answering; try again in a minute",
}
INTERNAL = "something went wrong on the server; the operators can look it up by its request id"


def _failure_page(ctx: AppContext) -> Any:
    def page(path: str, status: int, request_id: str) -> tuple[bytes, str]:
        if _wants_html(path):
            html = ctx.templates.get_template("error.html").render(
                status=status, message=INTERNAL, request_id=request_id, user=None
            )
            return html.encode(), "text/html; charset=utf-8"
        body = JSONResponse({"detail": INTERNAL, "request_id": request_id}).body
        return bytes(body), "application/json"

    return page


def _handlers(app: FastAPI) -> None:
    ctx: AppContext = app.state.ctx

    def reply(
        request: Request,
        status: int,
        detail: Any,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> Response:
        """An error page saying `message` for a browser, `{"detail": ...}` for the API."""
        request_id = request_id_of(request.scope)
        if _wants_html(request.url.path):
            html = ctx.templates.get_template("error.html").render(
                status=status,
                message=str(detail) if message is None else message,
                request_id=request_id,
                user=who.user if (who := getattr(request.state, "principal", None)) else None,
            )
            return HTMLResponse(html, status_code=status, headers=headers)
        body: dict[str, Any] = {"detail": detail, "request_id": request_id}
        if code is not None:
            body["code"] = code
        return JSONResponse(body, status, headers=headers)

    def coded(status: int) -> Any:
        async def handler(request: Request, exc: InspectorError) -> Response:
            if status < 500 and type(exc) not in _FIXED:
                return reply(request, status, exc.message, code=exc.code.value)
            # The exception (and the driver error it wraps) goes to the log, never the answer.
            log.error(
                "request %s: %s %s answered %d",
                request_id_of(request.scope),
                request.method,
                request.url.path,
                status,
                exc_info=exc,
            )
            fixed = next((m for t, m in _FIXED.items() if isinstance(exc, t)), INTERNAL)
            return reply(request, status, fixed, code=exc.code.value)

        return handler

    for exc_type, status in _STATUS:
        app.add_exception_handler(exc_type, coded(status))

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return reply(request, exc.status_code, exc.detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
            for e in exc.errors()
        ]
        text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return reply(request, 422, problems, text)
