"""The OpenAPI document and a readable page of it, both behind the login.

FastAPI's bundled Swagger UI loads its script from a CDN, which the CSP and the rule
"nothing from the internet" forbid; the page here is rendered on the server instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from inspector.review.auth import Principal, api_user, page_user
from inspector.review.context import AppContext, app_context
from inspector.review.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi(request: Request, _who: Principal = Depends(api_user)) -> Response:
    """The OpenAPI 3 document of /api/v1."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def docs(
    request: Request, who: Principal = Depends(page_user), ctx: AppContext = Depends(app_context)
) -> Response:
    """Every endpoint with its parameters, from the OpenAPI document."""
    spec: dict[str, Any] = request.app.openapi()
    ops = [
        {
            "method": method.upper(),
            "path": path,
            "summary": op.get("summary", ""),
            "description": op.get("description", ""),
            "params": [p["name"] for p in op.get("parameters", [])],
            "body": "requestBody" in op,
        }
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]
    return render(ctx, "api_docs.html", who, ops=ops)
