"""The queue and the inspections in it: listing, counts, calendar, detail, reviews, marks."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter, Depends, Query, Response
from fastapi.exceptions import RequestValidationError

from inspector.errors import InvalidInput
from inspector.protocol import RationaleState
from inspector.quality import leaning
from inspector.review import reviewing
from inspector.review.api.defs import (
    BulkAnswerIn,
    BulkConfirmIn,
    CalendarDay,
    CalendarOut,
    Counts,
    DefectOut,
    DefectType,
    InspectionOut,
    MediaOut,
    QueueItemOut,
    QueuePage,
    ReviewIn,
    ReviewOut,
    VerdictOut,
)
from inspector.review.auth import Principal, api_user, api_writer
from inspector.review.context import AppContext, app_context
from inspector.review.edge import FIRST_DAY, LAST_DAY, month_in_range
from inspector.review.filters import QueueQuery
from inspector.review.hosts import public_base
from inspector.store.detail import (
    InspectionDetail,
    ReviewView,
    VerdictView,
    inspection_detail,
    parse_request_id,
    review_history,
)
from inspector.store.filters import Cursor
from inspector.store.queue import queue_page, unreviewed_counts, unreviewed_days
from inspector.store.reviews import set_reviewed

router = APIRouter(tags=["inspections"])


@router.get("/queue", response_model=QueuePage)
def queue(
    q: QueueQuery = Depends(),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
    limit: int = Query(50, ge=1, le=500),
    who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> QueuePage:
    """One page of the queue, newest capture first, with the caller's unreviewed counts."""
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    with ctx.store.db.read() as session:
        after = Cursor.parse(cursor) if cursor else None
        items, nxt = queue_page(session, flt, who.user.id, after, limit)
        counts = unreviewed_counts(session, flt, who.user.id)
    return QueuePage(
        items=[
            QueueItemOut.model_validate(i, from_attributes=True).model_copy(
                update={"leaning": str(leaning(i.p_pass))}
            )
            for i in items
        ],
        next_cursor=nxt.token() if nxt is not None else None,
        counts=Counts(**counts),
    )


@router.get("/queue/counts", response_model=Counts)
def counts(
    q: QueueQuery = Depends(),
    who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> Counts:
    """How many inspections per tab the caller has not reviewed (tab filter ignored)."""
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    with ctx.store.db.read() as session:
        return Counts(**unreviewed_counts(session, flt, who.user.id))


def month_bounds(month: str | None) -> tuple[str, datetime, datetime]:
    """A YYYY-MM month (default: this one) as its name, first instant and the next month's."""
    try:
        first = date.fromisoformat(f"{month}-01") if month else datetime.now(UTC).date()
    except ValueError:
        raise InvalidInput(f"month {str(month)[:20]!r} is not YYYY-MM") from None
    if not month_in_range(first.year):
        raise InvalidInput(f"month: a month of {FIRST_DAY.year}–{LAST_DAY.year}")
    first = first.replace(day=1)
    nxt = first.replace(year=first.year + (first.month == 12), month=first.month % 12 + 1)
    start = datetime(first.year, first.month, 1, tzinfo=UTC)
    end = datetime(nxt.year, nxt.month, 1, tzinfo=UTC)
    return first.strftime("%Y-%m"), start, end


@router.get("/calendar", response_model=CalendarOut)
def calendar(
    q: QueueQuery = Depends(),
    month: str | None = Query(None, pattern=r"^\d{4}-\d{2}$"),
    who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> CalendarOut:
    """Days of a month with inspections in the tab that the caller has not reviewed."""
    name, start, end = month_bounds(month)
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    with ctx.store.db.read() as session:
        days = unreviewed_days(session, flt, who.user.id, start, end)
    return CalendarOut(month=name, days=[CalendarDay(day=d, unreviewed=n) for d, n in days])


def verdict_out(v: VerdictView) -> VerdictOut:
    """The API shape of a stored verdict."""
    return VerdictOut(
        verdict=v.verdict,
        confidence=v.confidence,
        p_pass=v.p_pass,
        rationale=v.rationale,
        rationale_state=RationaleState(v.rationale_state),
        transcript=v.transcript,
        defects=[DefectOut(type=str(d.get("type")), where=d.get("where")) for d in v.defects],
        model=v.model,
        adapter=v.adapter,
        adapter_fallback=v.adapter_fallback,
        prompt_version=v.prompt_version,
        worker_id=v.worker_id,
        latency_ms=v.latency_ms,
        decided_at=v.decided_at,
        note_disagrees=v.note_disagrees,
        rationale_reason=v.rationale_reason,
    )


def review_out(r: ReviewView) -> ReviewOut:
    """The API shape of a stored review."""
    return ReviewOut.model_validate(r, from_attributes=True)


def media_url(ctx: AppContext, sha256: str) -> str:
    """A medium's link: absolute under review.public_url, else relative (never the Host's)."""
    return f"{public_base(ctx.settings.review) or ''}/media/{sha256}"


def inspection_out(d: InspectionDetail, ctx: AppContext) -> InspectionOut:
    """The API shape of an inspection with everything about it."""
    return InspectionOut(
        request_id=d.request_id,
        site=d.site,
        line=d.line,
        station=d.station,
        part_id=d.part_id,
        captured_at=d.captured_at,
        received_at=d.received_at,
        operator=d.operator,
        note=d.note,
        media=[
            MediaOut(
                role=m.role,
                sha256=m.sha256,
                content_type=m.content_type,
                size=m.size,
                url=media_url(ctx, m.sha256),
            )
            for m in d.media
        ],
        verdict=verdict_out(d.verdict) if d.verdict else None,
        verdicts=[verdict_out(v) for v in d.verdicts],
        reviews=[review_out(r) for r in d.reviews],
        reviewed_by_me=d.reviewed_by_me,
        defect_catalogue=[
            DefectType(name=s.name, description=s.description) for s in ctx.defect_catalogue(d.site)
        ],
    )


@router.get("/inspections/{request_id}", response_model=InspectionOut)
def inspection(
    request_id: str,
    who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> InspectionOut:
    """One inspection: media by hash, every verdict, the full review history."""
    rid = parse_request_id(request_id)
    with ctx.store.db.read() as session:
        detail = inspection_detail(session, rid, who.user.id)
    return inspection_out(detail, ctx)


@router.get("/inspections/{request_id}/reviews", response_model=list[ReviewOut])
def reviews(
    request_id: str,
    _who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> list[ReviewOut]:
    """The inspection's review history, oldest first; the last one counts."""
    rid = parse_request_id(request_id)
    with ctx.store.db.read() as session:
        return [review_out(r) for r in review_history(session, rid)]


def _refused(exc: reviewing.AnswerRefused) -> RequestValidationError:
    """The review rules' refusal as a validation error naming the body field."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", exc.field), "msg": exc.reason, "input": None}]
    )


@router.post("/inspections/{request_id}/reviews", response_model=ReviewOut, status_code=201)
def add_review(
    request_id: str,
    body: ReviewIn,
    who: Principal = Depends(api_writer),
    ctx: AppContext = Depends(app_context),
) -> ReviewOut:
    """Record an explicit answer; appended to the history, marked reviewed for you.

    confirm keeps the model's PASS or FAIL (a REVIEW verdict has none: 422 on decision);
    answer and override record final_verdict; a FAIL names a defect type (422 on defect_type).
    """
    try:
        _, stored = reviewing.review_one(
            ctx,
            who.user,
            request_id,
            body.decision,
            body.final_verdict,
            body.defect_type,
            body.comment,
            body.review_id,
        )
    except reviewing.AnswerRefused as exc:
        raise _refused(exc) from None
    return review_out(stored)


@router.post("/reviews/confirm", status_code=200)
def confirm_selected(
    body: BulkConfirmIn,
    who: Principal = Depends(api_writer),
    ctx: AppContext = Depends(app_context),
) -> dict[str, int]:
    """Confirm the model's PASS or FAIL on several inspections (a REVIEW among them: 422)."""
    try:
        n = reviewing.confirm_many(ctx, who.user, [str(r) for r in body.request_ids])
    except reviewing.AnswerRefused as exc:
        raise _refused(exc) from None
    return {"confirmed": n}


@router.post("/reviews/answer", status_code=200)
def answer_selected(
    body: BulkAnswerIn,
    who: Principal = Depends(api_writer),
    ctx: AppContext = Depends(app_context),
) -> dict[str, int]:
    """Record one named answer (PASS, or FAIL with a defect type) on several inspections."""
    try:
        n = reviewing.answer_many(
            ctx,
            who.user,
            [str(r) for r in body.request_ids],
            body.final_verdict,
            body.defect_type,
            body.comment,
            via="api",
        )
    except reviewing.AnswerRefused as exc:
        raise _refused(exc) from None
    return {"answered": n}


def _set_mark(ctx: AppContext, who: Principal, request_id: str, reviewed: bool) -> Response:
    rid = parse_request_id(request_id)
    with ctx.store.db.write() as session:
        set_reviewed(session, who.user.id, who.user.username, rid, reviewed)
    return Response(status_code=204)


@router.put("/inspections/{request_id}/reviewed", status_code=204)
def mark_reviewed(
    request_id: str,
    who: Principal = Depends(api_writer),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Mark the inspection reviewed for you without adding a review."""
    return _set_mark(ctx, who, request_id, reviewed=True)


@router.delete("/inspections/{request_id}/reviewed", status_code=204)
def mark_unreviewed(
    request_id: str,
    who: Principal = Depends(api_writer),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Withdraw the inspection's answer: it stops counting everywhere and is back in the queue.

    The withdrawal is appended to the history (who, when); earlier entries stay.
    """
    return _set_mark(ctx, who, request_id, reviewed=False)
