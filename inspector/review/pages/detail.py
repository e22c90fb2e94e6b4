"""One inspection: photos, voice note, texts, versions, history, shadow verdicts, the review
forms and the golden mark."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response

from inspector.errors import InvalidInput
from inspector.quality import leaning
from inspector.review import reviewing
from inspector.review.auth import Principal, page_user
from inspector.review.context import AppContext, app_context
from inspector.review.filters import QueueQuery
from inspector.review.pages import checked_form, render, require_reviewer
from inspector.review.pages.queue import TABS as TAB_LABELS
from inspector.review.pages.queue import query_from
from inspector.store.detail import (
    InspectionDetail,
    ReviewView,
    inspection_detail,
    last_entry,
    media_of,
    parse_request_id,
)
from inspector.store.filters import Cursor
from inspector.store.golden import golden_of, mark_golden, unmark_golden
from inspector.store.queue import QueueFilter, neighbours, progress, rank_of
from inspector.store.reviews import review_inspections, withdraw_review
from inspector.store.shadow import shadow_verdicts

router = APIRouter(include_in_schema=False)


def _url(request_id: str | None, qs: str) -> str | None:
    return f"/inspections/{request_id}?{qs}" if request_id else None


def _key(flt: QueueFilter, d: InspectionDetail) -> Cursor:
    """The inspection's key in the queue order of `flt`."""
    return Cursor(d.captured_at, d.id, rank_of(flt, d.verdict.confidence if d.verdict else 0.0))


@dataclass(frozen=True, slots=True)
class Toast:
    """What the reviewer just saved: the part and the answer as stored."""

    part_id: str
    answer: ReviewView


def _toast(entry: tuple[str, ReviewView] | None, username: str) -> Toast | None:
    """The answer this user just saved, for the toast (None if the newest entry is not theirs)."""
    if entry is None or entry[1].reviewer != username:
        return None
    return Toast(*entry)


def _page(
    ctx: AppContext,
    who: Principal,
    q: QueueQuery,
    rid: str,
    error: str | None = None,
    saved: str | None = None,
) -> Response:
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    with ctx.store.db.read() as session:
        d = inspection_detail(session, rid, who.user.id)
        key = _key(flt, d)
        prev_id, next_id = neighbours(session, flt, who.user.id, key)
        where = progress(session, flt, who.user.id, key)
        next_media = [m.sha256 for m in media_of(session, next_id)] if next_id else []
        entry = last_entry(session, parse_request_id(saved)) if saved else None
        shadows = shadow_verdicts(session, [rid])
        golden = golden_of(session, rid)
    toast = _toast(entry, who.user.username)
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
        leaning=leaning(d.verdict.p_pass) if d.verdict else None,
        confirm_as=reviewing.confirmable(d),
        confirm_defect=reviewing.model_defect(ctx, d),
        standing=d.standing,
        progress=where,
        tab_label=dict(TAB_LABELS).get(q.tab, q.tab),
        toast=toast,
        can_review=who.can_review,
        shadows=shadows,
        golden=golden,
        error=error,
    )


@router.get("/inspections/{request_id}")
def detail_page(
    request_id: str,
    q: QueueQuery = Depends(),
    saved: uuid.UUID | None = Query(None, description="the inspection just answered (toast)"),
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """The inspection, with the next one in the queue preloaded (and a toast after a save)."""
    return _page(ctx, who, q, parse_request_id(request_id), saved=str(saved) if saved else None)


@router.post("/inspections/{request_id}/review")
async def review(
    request_id: str,
    request: Request,
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Store the answer, then show the next inspection of the queue with a "saved" toast.

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
            _, next_id = neighbours(session, flt, who.user.id, _key(flt, detail))
    except InvalidInput as exc:
        return _page(ctx, who, q, rid, error=exc.message)
    qs = q.query_string(saved=rid)
    target = f"/inspections/{next_id}?{qs}" if next_id else f"/queue?{qs}"
    return RedirectResponse(target, status_code=303)


@router.post("/inspections/{request_id}/unreviewed")
async def unreviewed(
    request_id: str,
    request: Request,
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Withdraw the inspection's answer (back in the queue); stay on it, or go to the queue."""
    form = await checked_form(request, who)
    require_reviewer(who)
    q = query_from(form.get("q", ""))
    rid = parse_request_id(request_id)
    with ctx.store.db.write() as session:
        withdraw_review(session, who.user.id, who.user.username, rid, via="page")
    if form.get("back") == "queue":
        return RedirectResponse(f"/queue?{q.query_string()}", status_code=303)
    return RedirectResponse(f"/inspections/{rid}?{q.query_string()}", status_code=303)


@router.post("/inspections/{request_id}/golden")
async def golden(
    request_id: str,
    request: Request,
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Mark the reviewed inspection golden (action=mark) or stop that (action=unmark); audited.

    Marking an unreviewed inspection is refused (422 golden.not_reviewed): the reviewed
    answer is what every worker must give.
    """
    form = await checked_form(request, who)
    require_reviewer(who)
    q = query_from(form.get("q", ""))
    rid = parse_request_id(request_id)
    action = form.get("action", "")
    if action not in ("mark", "unmark"):
        raise HTTPException(422, "action: mark or unmark")
    with ctx.store.db.write() as session:
        if action == "mark":
            mark_golden(session, rid, who.user.username)
        else:
            unmark_golden(session, rid, who.user.username)
    return RedirectResponse(f"/inspections/{rid}?{q.query_string()}", status_code=303)
