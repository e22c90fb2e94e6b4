"""Server-rendered pages; forms carry the session's CSRF token."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse

from inspector.review.auth import CSRF_FIELD, Principal, csrf_matches
from inspector.review.context import AppContext
from inspector.review.edge import check_pairs


def render(
    ctx: AppContext,
    name: str,
    who: Principal | None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """A template rendered with the user and their CSRF token."""
    html = ctx.templates.get_template(name).render(
        user=who.user if who else None,
        csrf=who.csrf if who else None,
        csrf_field=CSRF_FIELD,
        **values,
    )
    return HTMLResponse(html, status_code=status)


async def checked_form(request: Request, who: Principal) -> dict[str, str]:
    """The posted form, refused (403) unless it carries the session's CSRF token.

    Every field is checked for characters a database cannot hold (422 naming the field).
    """
    form = await request.form()
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    values = dict(pairs)
    if not csrf_matches(who, values.get(CSRF_FIELD)):
        raise HTTPException(403, "this form's security token is missing or stale: reload the page")
    check_pairs("form", pairs)
    return values


def require_reviewer(who: Principal) -> None:
    """403 for viewers."""
    if not who.can_review:
        raise HTTPException(403, f"role {who.user.role} may look but not review")
