"""The queue page (tabs, filters, keyset pages), bulk answers, and the calendar."""

from __future__ import annotations

import calendar as cal
from datetime import timedelta
from typing import Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Query, Request
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
from inspector.store.shadow import StoredShadowVerdict, shadow_verdicts

router = APIRouter(include_in_schema=False)
TABS = [
    ("review", "REVIEW"),
    ("fail", "FAIL"),
    ("audit", "PASS audit"),
    ("all", "All"),
    ("shadow", "Shadow disagreements"),
]


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
    recorded: int | None = Query(None, ge=1, le=500, description="a bulk answer's count (toast)"),
    answer: Literal["PASS", "FAIL"] | None = Query(None, description="a bulk answer (toast)"),
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """The review queue: the REVIEW tab most uncertain first, the others newest first."""
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    with ctx.store.db.read() as session:
        after = Cursor.parse(cursor) if cursor else None
        items, nxt = queue.queue_page(
            session, flt, who.user.id, after, ctx.settings.review.page_size
        )
        counts = queue.unreviewed_counts(session, flt, who.user.id)
        shadowed = (
            shadow_verdicts(session, [i.request_id for i in items]) if q.tab == "shadow" else []
        )
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
        catalogue=_catalogue(ctx, q.site, [i.site for i in items]),
        toast=(recorded, answer) if recorded and answer else None,
        shadows=_by_request(shadowed),
    )


def _by_request(verdicts: list[StoredShadowVerdict]) -> dict[str, list[StoredShadowVerdict]]:
    """Shadow verdicts by the request they judged (the shadow tab shows them beside each row)."""
    out: dict[str, list[StoredShadowVerdict]] = {}
    for v in verdicts:
        out.setdefault(v.request_id, []).append(v)
    return out


def _catalogue(ctx: AppContext, site: str, shown: list[str]) -> list[str]:
    """Defect types a bulk FAIL may name: the filtered site's, else those of the sites shown."""
    names: dict[str, None] = {}
    for s in [site] if site else dict.fromkeys(shown):
        names.update(dict.fromkeys(d.name for d in ctx.defect_catalogue(s)))
    return list(names)


@router.post("/queue/answer")
async def answer_selected(
    request: Request,
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Record the one answer the bulk bar named (PASS, or FAIL with a defect type) on every
    selected inspection, then back to the queue with a toast.

    The page asks once before posting and sends how many it asked about: a count that does
    not match the selection posted is refused, so nothing is recorded that was not shown.
    """
    await checked_form(request, who)
    require_reviewer(who)
    form = await request.form()
    ids = [str(v) for v in form.getlist("request_id")][:500]
    q = query_from(str(form.get("q", "")))
    final = str(form.get("final_verdict", ""))
    if not ids:
        raise HTTPException(422, "request_id: select at least one inspection")
    if str(form.get("count", "")) != str(len(dict.fromkeys(ids))):
        raise HTTPException(422, "count: the selection changed since you were asked; reload")
    n = reviewing.answer_many(
        ctx,
        who.user,
        ids,
        final,
        str(form.get("defect_type") or "") if final == "FAIL" else None,
        str(form.get("comment") or "") if final == "FAIL" else None,
    )
    return RedirectResponse(f"/queue?{q.query_string(recorded=n, answer=final)}", status_code=303)


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
