"""/api/v1 golden parts: mark and unmark a reviewed inspection, list them.

A golden part is a reviewed inspection the canary re-sends to every worker; its reviewed
answer is frozen when it is marked (see inspector.store.golden).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from inspector.review.auth import Principal, api_user, api_writer
from inspector.review.context import AppContext, app_context
from inspector.store.detail import parse_request_id
from inspector.store.golden import GoldenView, list_golden, mark_golden, unmark_golden

router = APIRouter(tags=["golden"])


class GoldenOut(BaseModel):
    """A golden part: the inspection, the answer every worker must give, who marked it."""

    request_id: str
    site: str
    line: str
    station: str
    part_id: str
    expected: str = Field(title="The reviewed PASS or FAIL, frozen when marked")
    marked_by: str
    marked_at: datetime


class UnmarkedOut(BaseModel):
    request_id: str
    unmarked: bool = Field(title="False: it was not golden")


def golden_out(view: GoldenView) -> GoldenOut:
    """The API's view of a golden part."""
    return GoldenOut(
        request_id=view.request_id,
        site=view.site,
        line=view.line,
        station=view.station,
        part_id=view.part_id,
        expected=view.expected.value,
        marked_by=view.marked_by,
        marked_at=view.marked_at,
    )


@router.get("/golden", response_model=list[GoldenOut])
def golden(
    site: str | None = None,
    _who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> list[GoldenOut]:
    """Every golden part (of one site), oldest mark first."""
    with ctx.store.db.read() as session:
        return [golden_out(v) for v in list_golden(session, site)]


@router.put("/inspections/{request_id}/golden", response_model=GoldenOut)
def mark(
    request_id: str,
    who: Principal = Depends(api_writer),
    ctx: AppContext = Depends(app_context),
) -> GoldenOut:
    """Mark a reviewed inspection golden (idempotent; 422 golden.not_reviewed if unreviewed)."""
    rid = parse_request_id(request_id)
    with ctx.store.db.write() as session:
        view, _ = mark_golden(session, rid, who.user.username)
    return golden_out(view)


@router.delete("/inspections/{request_id}/golden", response_model=UnmarkedOut)
def unmark(
    request_id: str,
    who: Principal = Depends(api_writer),
    ctx: AppContext = Depends(app_context),
) -> UnmarkedOut:
    """Stop sending the inspection as a golden part (audited)."""
    rid = parse_request_id(request_id)
    with ctx.store.db.write() as session:
        removed = unmark_golden(session, rid, who.user.username)
    return UnmarkedOut(request_id=rid, unmarked=removed)
