"""Turning a reviewer's answer into stored reviews: shared by the pages and the API.

Every stored review is an answer a person chose: PASS or FAIL. "Confirm" keeps the model's
verdict and exists only where that verdict is PASS or FAIL; a REVIEW verdict is answered
PASS or FAIL explicitly, never by the way it leaned. A FAIL answer names a defect type of
the site's catalogue (`other` with a comment). The stored decision says how the answer
relates to the verdict: confirm, override, or answer (of a REVIEW verdict).
"""

from __future__ import annotations

import uuid
from typing import Literal

from inspector.errors import InvalidInput
from inspector.quality import Decision
from inspector.review.context import AppContext
from inspector.store.detail import (
    InspectionDetail,
    ReviewView,
    inspection_detail,
    parse_request_id,
)
from inspector.store.reviews import ReviewInput, review_inspections
from inspector.store.users import UserRecord

Final = Literal["PASS", "FAIL"]
Via = Literal["page", "bulk", "api"]
DECISIONS = ("confirm", "override", "answer")


class AnswerRefused(InvalidInput):
    """An answer the review rules refuse; `field` names the form or JSON field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def confirmable(detail: InspectionDetail) -> Final | None:
    """What "confirm" records here: the model's PASS or FAIL; None for REVIEW or no verdict."""
    v = detail.verdict
    if v is None or v.verdict not in (Decision.PASS, Decision.FAIL):
        return None
    return "PASS" if v.verdict == Decision.PASS else "FAIL"


def model_defect(ctx: AppContext, detail: InspectionDetail) -> str | None:
    """The defect type the model named first, if it is one of the site's catalogue."""
    v = detail.verdict
    if v is None or not v.defects:
        return None
    first = str(v.defects[0].get("type") or "")
    return first if first in {d.name for d in ctx.defect_catalogue(detail.site)} else None


def stored_decision(
    detail: InspectionDetail, final: Final
) -> Literal["confirm", "override", "answer"]:
    """How the answer relates to the model's verdict."""
    kept = confirmable(detail)
    if kept is None:
        return "answer"
    return "confirm" if kept == final else "override"


def _final(detail: InspectionDetail, decision: str, final_verdict: str | None) -> Final:
    if decision not in DECISIONS:
        raise AnswerRefused("decision", "one of confirm, override or answer")
    if decision == "confirm":
        kept = confirmable(detail)
        if kept is None:
            shown = detail.verdict.verdict if detail.verdict else "missing"
            raise AnswerRefused(
                "decision",
                f"the model's verdict is {shown}: there is nothing to confirm, "
                "answer PASS or FAIL (decision answer with final_verdict)",
            )
        if final_verdict not in (None, "", kept):
            raise AnswerRefused("final_verdict", f"confirm records the model's {kept}")
        return kept
    if final_verdict not in ("PASS", "FAIL"):
        raise AnswerRefused("final_verdict", f"{decision} needs final_verdict PASS or FAIL")
    return "PASS" if final_verdict == "PASS" else "FAIL"


def build_review(
    ctx: AppContext,
    detail: InspectionDetail,
    user: UserRecord,
    decision: str,
    final_verdict: str | None,
    defect_type: str | None,
    comment: str | None,
    review_id: uuid.UUID | None = None,
    via: Via = "page",
) -> ReviewInput:
    """A validated answer; AnswerRefused names the field that breaks a rule."""
    comment = (comment or "").strip() or None
    defect_type = (defect_type or "").strip() or None
    if comment is not None and len(comment) > 2000:
        raise AnswerRefused("comment", "at most 2000 characters")
    final = _final(detail, decision, final_verdict)
    if final == "PASS":
        if defect_type is not None:
            raise AnswerRefused("defect_type", "a PASS answer names no defect type")
    else:
        if defect_type is None and decision == "confirm":
            defect_type = model_defect(ctx, detail)
        names = [d.name for d in ctx.defect_catalogue(detail.site)]
        if defect_type not in names:
            raise AnswerRefused(
                "defect_type",
                f"a FAIL answer needs a defect type of site {detail.site}: {', '.join(names)}",
            )
        if defect_type == "other" and comment is None:
            raise AnswerRefused("comment", "defect type other needs a comment that says what")
    return ReviewInput(
        review_id=review_id or uuid.uuid4(),
        request_id=uuid.UUID(detail.request_id),
        decision=stored_decision(detail, final),
        final_verdict=final,
        reviewer=user.username,
        defect_type=defect_type,
        comment=comment,
        via=via,
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
    via: Via = "api",
) -> tuple[InspectionDetail, ReviewView]:
    """Store one answer and mark the inspection reviewed by the user."""
    rid = parse_request_id(request_id)
    with ctx.store.db.write() as session:
        detail = inspection_detail(session, rid, user.id)
        review = build_review(
            ctx, detail, user, decision, final_verdict, defect_type, comment, review_id, via
        )
        (stored,) = review_inspections(session, user.id, [review])
    return detail, stored


def answer_many(
    ctx: AppContext,
    user: UserRecord,
    request_ids: list[str],
    final_verdict: str | None,
    defect_type: str | None = None,
    comment: str | None = None,
    via: Via = "bulk",
) -> int:
    """Record one named answer (PASS, or FAIL with its defect type) on several inspections.

    One transaction: all or none. Each stored decision still says how the answer relates
    to that inspection's verdict.
    """
    ids = [parse_request_id(r) for r in dict.fromkeys(request_ids)]
    with ctx.store.db.write() as session:
        details = [inspection_detail(session, rid, user.id) for rid in ids]
        batch = [
            build_review(ctx, d, user, "answer", final_verdict, defect_type, comment, via=via)
            for d in details
        ]
        review_inspections(session, user.id, batch)
    return len(batch)


def confirm_many(ctx: AppContext, user: UserRecord, request_ids: list[str]) -> int:
    """Confirm the model's PASS or FAIL on several inspections; a REVIEW among them refuses all."""
    ids = [parse_request_id(r) for r in dict.fromkeys(request_ids)]
    with ctx.store.db.write() as session:
        details = [inspection_detail(session, rid, user.id) for rid in ids]
        unsure = [d.request_id for d in details if confirmable(d) is None]
        if unsure:
            raise AnswerRefused(
                "request_ids",
                f"{len(unsure)} of these have no PASS or FAIL to confirm (first {unsure[0]}): "
                "answer them PASS or FAIL instead",
            )
        batch = [
            build_review(ctx, d, user, "confirm", None, None, None, via="bulk") for d in details
        ]
        review_inspections(session, user.id, batch)
    return len(batch)
