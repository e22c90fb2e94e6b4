"""Turning a reviewer's decision into stored reviews: shared by the pages and the API."""

from __future__ import annotations

import uuid
from typing import Literal

from inspector.errors import InvalidInput
from inspector.quality import leaning
from inspector.review.context import AppContext
from inspector.store.detail import (
    InspectionDetail,
    ReviewView,
    inspection_detail,
    parse_request_id,
)
from inspector.store.reviews import ReviewInput, review_inspections
from inspector.store.users import UserRecord


def confirmed_verdict(detail: InspectionDetail) -> Literal["PASS", "FAIL"]:
    """What confirming means: the model's verdict, or for REVIEW the way it leaned."""
    v = detail.verdict
    if v is None:
        raise InvalidInput("this inspection has no verdict to confirm yet; override it instead")
    if v.verdict in ("PASS", "FAIL"):
        return "PASS" if v.verdict == "PASS" else "FAIL"
    return "PASS" if leaning(v.p_pass) == "PASS" else "FAIL"


def build_review(
    ctx: AppContext,
    detail: InspectionDetail,
    user: UserRecord,
    decision: str,
    final_verdict: str | None,
    defect_type: str | None,
    comment: str | None,
    review_id: uuid.UUID | None = None,
) -> ReviewInput:
    """A validated review: override FAIL names a defect type from the site's catalogue."""
    comment = (comment or "").strip() or None
    defect_type = defect_type or None
    if comment is not None and len(comment) > 2000:
        raise InvalidInput("a comment is at most 2000 characters")
    if decision == "confirm":
        final = confirmed_verdict(detail)
        if final == "FAIL" and defect_type is None and detail.verdict and detail.verdict.defects:
            defect_type = str(detail.verdict.defects[0].get("type") or "") or None
    elif decision == "override" and final_verdict in ("PASS", "FAIL"):
        final = "PASS" if final_verdict == "PASS" else "FAIL"
    else:
        raise InvalidInput("decision must be confirm, or override with PASS or FAIL")
    if final == "PASS":
        defect_type = None
    elif decision == "override":
        names = [d.name for d in ctx.defect_catalogue(detail.site)]
        if defect_type not in names:
            raise InvalidInput(
                f"overriding to FAIL needs a defect type of site {detail.site}: {', '.join(names)}"
            )
    return ReviewInput(
        review_id=review_id or uuid.uuid4(),
        request_id=uuid.UUID(detail.request_id),
        decision="confirm" if decision == "confirm" else "override",
        final_verdict=final,
        reviewer=user.username,
        defect_type=defect_type,
        comment=comment,
    )


def review_one(
    ctx: AppContext,
    user: UserRecord,
    request_id: str,
    decision: str,
    final_verdict: str | None = None,
    defect_type: str | None = None,
    comment: str | None = None,
    review_id: uuid.UUID | None = None,
) -> tuple[InspectionDetail, ReviewView]:
    """Store one review and mark the inspection reviewed by the user."""
    rid = parse_request_id(request_id)
    with ctx.store.db.write() as session:
        detail = inspection_detail(session, rid, user.id)
        review = build_review(
            ctx, detail, user, decision, final_verdict, defect_type, comment, review_id
        )
        (stored,) = review_inspections(session, user.id, [review])
    return detail, stored


def confirm_many(ctx: AppContext, user: UserRecord, request_ids: list[str]) -> int:
    """Confirm several inspections in one transaction; all or none."""
    ids = [parse_request_id(r) for r in dict.fromkeys(request_ids)]
    with ctx.store.db.write() as session:
        details = [inspection_detail(session, rid, user.id) for rid in ids]
        batch = [build_review(ctx, d, user, "confirm", None, None, None) for d in details]
        review_inspections(session, user.id, batch)
    return len(batch)
