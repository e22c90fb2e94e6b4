"""Builds the FastAPI app: routers by resource, error pages, static files, headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from inspector.errors import InspectorError, InvalidInput, NotFound, ReviewConflict
from inspector.review.auth import LoginRequired
from inspector.review.context import HERE, AppContext
from inspector.review.security import SecurityHeaders
from inspector.settings import Settings
from inspector.store import Store


def build_app(settings: Settings, store: Store) -> FastAPI:
    """The app, holding the settings and store it was given."""
    from inspector.review.api import docs, export, inspections, session, stats
    from inspector.review.pages import detail, login, numbers, queue
    from inspector.review.pages import media as media_page

    app = FastAPI(
        title="Inspector review",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ctx = AppContext.build(settings, store)
    for module in (session, inspections, stats, export, docs):
        app.include_router(module.router, prefix="/api/v1")
    for page in (login, queue, detail, numbers, media_page):
        app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _handlers(app)
    app.add_middleware(SecurityHeaders)
    return app


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/")


# Coded errors as HTTP statuses (Starlette takes the nearest class in the exception's MRO).
_STATUS: tuple[tuple[type[InspectorError], int], ...] = (
    (NotFound, 404),
    (InvalidInput, 422),
    (ReviewConflict, 409),
    (InspectorError, 503),
)


def _handlers(app: FastAPI) -> None:
    ctx: AppContext = app.state.ctx

    def reply(
        request: Request,
        status: int,
        detail: Any,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """An error page saying `message` for a browser, `{"detail": ...}` for the API."""
        if _wants_html(request):
            html = ctx.templates.get_template("error.html").render(
                status=status,
                message=str(detail) if message is None else message,
                user=getattr(request.state, "principal", None),
            )
            return HTMLResponse(html, status_code=status)
        return JSONResponse({"detail": detail}, status, headers=headers)

    def coded(status: int) -> Any:
        async def handler(request: Request, exc: InspectorError) -> Response:
            return reply(request, status, exc.message)

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
