"""Reviews: a quality engineer's answer on an inspection, appended once per review_id, and
the per-user reviewed marks that take it out of that user's queue.

Reviews are append-only and the latest counts (store.tallies keeps which one that is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inspector.errors import InvalidReview, NotFound, ReviewConflict
from inspector.protocol import utcnow
from inspector.store.detail import ReviewView, inspection_id, review_view
from inspector.store.inspections import find_inspection
from inspector.store.models import Inspection, Review, ReviewMark
from inspector.store.tallies import review_recorded
from inspector.store.verdicts import latest_verdict


@dataclass(frozen=True, slots=True)
class ReviewInput:
    """A quality engineer's decision on one inspection."""

    review_id: UUID
    request_id: UUID
    decision: Literal["confirm", "override"]
    final_verdict: Literal["PASS", "FAIL"]
    reviewer: str
    defect_type: str | None = None
    comment: str | None = None


def record_review(session: Session, review: ReviewInput) -> tuple[Review, bool]:
    """Append a review once per review_id; the same id with other content is refused."""
    inspection = find_inspection(session, review.request_id)
    if inspection is None:
        raise NotFound(f"no inspection {review.request_id} to review")
    if review.decision not in ("confirm", "override") or review.final_verdict not in (
        "PASS",
        "FAIL",
    ):
        raise InvalidReview("decision must be confirm|override and final_verdict PASS|FAIL")
    if not review.reviewer.strip():
        raise InvalidReview("a review needs the reviewer's name")
    verdict = latest_verdict(session, review.request_id)
    existing = session.scalar(sa.select(Review).where(Review.review_id == str(review.review_id)))
    if existing is not None:
        same = (
            existing.inspection_id == inspection.id
            and existing.decision == review.decision
            and existing.final_verdict == review.final_verdict
            and existing.reviewer == review.reviewer
            and existing.defect_type == review.defect_type
            and existing.comment == review.comment
        )
        if not same:
            raise ReviewConflict(
                f"review {review.review_id} was already recorded with different content"
            )
        return existing, False
    row = Review(
        review_id=str(review.review_id),
        inspection_id=inspection.id,
        verdict_id=verdict.id if verdict is not None else None,
        decision=review.decision,
        final_verdict=review.final_verdict,
        defect_type=review.defect_type,
        comment=review.comment,
        reviewer=review.reviewer,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    review_recorded(session, inspection.id, row.id)
    return row, True


def review_inspections(
    session: Session, user_id: int, reviews: Sequence[ReviewInput]
) -> list[ReviewView]:
    """Append reviews (idempotent by review_id) and mark the inspections reviewed by the user."""
    out = [review_view(record_review(session, review)[0]) for review in reviews]
    mark_reviewed(session, user_id, [str(r.request_id) for r in reviews])
    return out


def _insert_ignoring_duplicates(session: Session) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return sqlite.insert(ReviewMark).on_conflict_do_nothing()
    return postgresql.insert(ReviewMark).on_conflict_do_nothing()


def mark_reviewed(session: Session, user_id: int, request_ids: Sequence[str]) -> int:
    """Mark inspections reviewed by this user (already marked ones stay); return how many."""
    ids = list(
        session.scalars(sa.select(Inspection.id).where(Inspection.request_id.in_(request_ids)))
    )
    if len(ids) != len(set(request_ids)):
        raise NotFound("some of these inspections do not exist")
    now = utcnow()
    session.execute(
        _insert_ignoring_duplicates(session),
        [{"user_id": user_id, "inspection_id": iid, "marked_at": now} for iid in ids],
    )
    return len(ids)


def mark_unreviewed(session: Session, user_id: int, request_id: str) -> None:
    """Put an inspection back in this user's unreviewed queue."""
    iid = inspection_id(session, request_id)
    session.execute(
        sa.delete(ReviewMark).where(ReviewMark.user_id == user_id, ReviewMark.inspection_id == iid)
    )


def set_reviewed(session: Session, user_id: int, request_id: str, reviewed: bool) -> None:
    """Mark one inspection reviewed by this user, or put it back in their queue."""
    if reviewed:
        mark_reviewed(session, user_id, [request_id])
    else:
        mark_unreviewed(session, user_id, request_id)
