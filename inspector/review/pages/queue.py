"""The queue page (tabs, filters, keyset pages), bulk confirm, and the calendar."""

from __future__ import annotations

import calendar as cal
from datetime import timedelta
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from inspector.review import reviewing
from inspector.review.api.inspections import month_bounds
from inspector.review.auth import Principal, page_user
from inspector.review.context import AppContext, app_context
from inspector.review.edge import check_pairs
from inspector.review.filters import QueueQuery
from inspector.review.pages import checked_form, render, require_reviewer
from inspector.store import queue
from inspector.store.filters import Cursor

router = APIRouter(include_in_schema=False)
TABS = [("review", "REVIEW"), ("fail", "FAIL"), ("audit", "PASS audit"), ("all", "All")]


def query_from(text: str) -> QueueQuery:
    """Queue filters carried through a form's hidden `q` field, re-validated (422 names q.…)."""
    pairs = parse_qsl(text[:2000])
    check_pairs("form", pairs, prefix="q.")
    try:
        return QueueQuery.model_validate(dict(pairs))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("form", "q." + ".".join(map(str, e["loc"])))} for e in exc.errors()]
        ) from None


@router.get("/queue")
def queue_page(
    q: QueueQuery = Depends(),
    cursor: str | None = Query(None),
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """The review queue."""
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    with ctx.store.db.read() as session:
        after = Cursor.parse(cursor) if cursor else None
        items, nxt = queue.queue_page(
            session, flt, who.user.id, after, ctx.settings.review.page_size
        )
        counts = queue.unreviewed_counts(session, flt, who.user.id)
    return render(
        ctx,
        "queue.html",
        who,
        q=q,
        tabs=TABS,
        counts=counts,
        items=items,
        cursor=cursor,
        next_cursor=nxt.token() if nxt is not None else None,
        search_value=q.part_id,
    )


@router.post("/queue/confirm")
async def confirm_selected(
    request: Request,
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Confirm every selected inspection (shift-y), then back to the queue."""
    await checked_form(request, who)
    require_reviewer(who)
    form = await request.form()
    ids = [str(v) for v in form.getlist("request_id")][:500]
    q = query_from(str(form.get("q", "")))
    if ids:
        reviewing.confirm_many(ctx, who.user, ids)
    return RedirectResponse(f"/queue?{q.query_string()}", status_code=303)


@router.get("/calendar")
def calendar_page(
    q: QueueQuery = Depends(),
    month: str | None = Query(None, pattern=r"^\d{4}-\d{2}$"),
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """A month of days, each with how many inspections you have not reviewed."""
    name, start, end = month_bounds(month)
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    with ctx.store.db.read() as session:
        days = dict(queue.unreviewed_days(session, flt, who.user.id, start, end))
    first = start.date()
    weeks = cal.Calendar().monthdatescalendar(first.year, first.month)
    prev_month = (first - timedelta(days=1)).strftime("%Y-%m")
    next_month = end.strftime("%Y-%m")
    return render(
        ctx,
        "calendar.html",
        who,
        q=q,
        month=name,
        weeks=weeks,
        days=days,
        first=first,
        prev_month=prev_month,
        next_month=next_month,
    )
