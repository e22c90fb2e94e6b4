"""Builds the FastAPI app: routers by resource, error pages, static files, headers."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from inspector.errors import InspectorError, InvalidInput, NotFound, ReviewConflict
from inspector.review.auth import LoginRequired
from inspector.review.context import HERE, AppContext, template_env
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
    app.state.ctx = AppContext(settings, store, template_env())
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


def _handlers(app: FastAPI) -> None:
    ctx: AppContext = app.state.ctx

    def page(request: Request, status: int, message: str) -> Response:
        html = ctx.templates.get_template("error.html").render(
            status=status, message=message, user=getattr(request.state, "principal", None)
        )
        return HTMLResponse(html, status_code=status)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if _wants_html(request):
            return page(request, exc.status_code, str(exc.detail))
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound) -> Response:
        if _wants_html(request):
            return page(request, 404, exc.message)
        return JSONResponse({"detail": exc.message}, 404)

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> Response:
        if _wants_html(request):
            return page(request, 422, exc.message)
        return JSONResponse({"detail": exc.message}, 422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
            for e in exc.errors()
        ]
        if _wants_html(request):
            text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            return page(request, 422, text)
        return JSONResponse({"detail": problems}, 422)

    @app.exception_handler(ReviewConflict)
    async def _conflict(request: Request, exc: ReviewConflict) -> Response:
        if _wants_html(request):
            return page(request, 409, exc.message)
        return JSONResponse({"detail": exc.message}, 409)

    @app.exception_handler(InspectorError)
    async def _other(request: Request, exc: InspectorError) -> Response:
        if _wants_html(request):
            return page(request, 503, exc.message)
        return JSONResponse({"detail": exc.message}, 503)
