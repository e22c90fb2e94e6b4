"""One inspection: photos, voice note, texts, versions, history, and the review forms."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from inspector.errors import InvalidInput
from inspector.review import reviewing
from inspector.review.auth import Principal, page_user
from inspector.review.context import AppContext, app_context
from inspector.review.filters import QueueQuery
from inspector.review.pages import checked_form, render, require_reviewer
from inspector.review.pages.queue import query_from
from inspector.store.detail import InspectionDetail, inspection_detail, media_of, parse_request_id
from inspector.store.queue import neighbours
from inspector.store.reviews import mark_unreviewed, review_inspections

router = APIRouter(include_in_schema=False)


def _url(request_id: str | None, qs: str) -> str | None:
    return f"/inspections/{request_id}?{qs}" if request_id else None


def _page(
    ctx: AppContext, who: Principal, q: QueueQuery, rid: str, error: str | None = None
) -> Response:
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    with ctx.store.db.read() as session:
        d = inspection_detail(session, rid, who.user.id)
        prev_id, next_id = neighbours(session, flt, who.user.id, d.cursor)
        next_media = [m.sha256 for m in media_of(session, next_id)] if next_id else []
    return render(
        ctx,
        "detail.html",
        who,
        status=422 if error else 200,
        d=d,
        qs=q.query_string(),
        prev_url=_url(prev_id, q.query_string()),
        next_url=_url(next_id, q.query_string()),
        next_media=next_media,
        catalogue=ctx.defect_catalogue(d.site),
        threshold=ctx.threshold(d.site),
        confirm_as=_confirm_label(d),
        can_review=who.can_review,
        error=error,
    )


def _confirm_label(d: InspectionDetail) -> str:
    try:
        return reviewing.confirmed_verdict(d)
    except InvalidInput:
        return ""


@router.get("/inspections/{request_id}")
def detail_page(
    request_id: str,
    q: QueueQuery = Depends(),
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """The inspection, with the next one in the queue preloaded."""
    return _page(ctx, who, q, parse_request_id(request_id))


@router.post("/inspections/{request_id}/review")
async def review(
    request_id: str,
    request: Request,
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Store the decision, then show the next inspection of the queue.

    Everything the answer needs is validated before the write, and the next inspection is
    found inside the same transaction: a request that fails stores nothing, so a retry
    cannot store the review twice.
    """
    form = await checked_form(request, who)
    require_reviewer(who)
    q = query_from(form.get("q", ""))
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    rid = parse_request_id(request_id)
    try:
        with ctx.store.db.write() as session:
            detail = inspection_detail(session, rid, who.user.id)
            review = reviewing.build_review(
                ctx,
                detail,
                who.user,
                form.get("decision", ""),
                form.get("final_verdict"),
                form.get("defect_type"),
                form.get("comment"),
            )
            review_inspections(session, who.user.id, [review])
            _, next_id = neighbours(session, flt, who.user.id, detail.cursor)
    except InvalidInput as exc:
        return _page(ctx, who, q, rid, error=exc.message)
    target = _url(next_id, q.query_string()) or f"/queue?{q.query_string()}"
    return RedirectResponse(target, status_code=303)


@router.post("/inspections/{request_id}/unreviewed")
async def unreviewed(
    request_id: str,
    request: Request,
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Put the inspection back in your queue, and stay on it (or go back to the queue)."""
    form = await checked_form(request, who)
    require_reviewer(who)
    q = query_from(form.get("q", ""))
    rid = parse_request_id(request_id)
    with ctx.store.db.write() as session:
        mark_unreviewed(session, who.user.id, rid)
    if form.get("back") == "queue":
        return RedirectResponse(f"/queue?{q.query_string()}", status_code=303)
    return RedirectResponse(f"/inspections/{rid}?{q.query_string()}", status_code=303)
