"""Reviews: a quality engineer's answer on an inspection, appended once per review_id, and
the per-user reviewed marks that take it out of that user's queue.

Reviews are append-only and the latest counts (store.tallies keeps which one that is). A
withdrawal is appended like an answer: after it the inspection has no answer that counts
(no label, no tally, no snapshot item) until someone answers again. Every recorded answer
marks the inspection reviewed for the user who recorded it, whichever path recorded it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inspector.errors import InvalidReview, NotFound, ReviewConflict
from inspector.protocol import utcnow
from inspector.store.detail import ReviewView, inspection_id, review_view
from inspector.store.inspections import find_inspection
from inspector.store.models import Inspection, Review, ReviewMark, User
from inspector.store.tallies import review_recorded, review_withdrawn
from inspector.store.verdicts import latest_verdict

ANSWERS = ("confirm", "override", "answer")


@dataclass(frozen=True, slots=True)
class ReviewInput:
    """A quality engineer's decision on one inspection."""

    review_id: UUID
    request_id: UUID
    decision: Literal["confirm", "override", "answer"]
    final_verdict: Literal["PASS", "FAIL"]
    reviewer: str
    defect_type: str | None = None
    comment: str | None = None
    via: str | None = None  # page | bulk | api | demo: where it was recorded


def record_review(session: Session, review: ReviewInput) -> tuple[Review, bool]:
    """Append a review once per review_id; the same id with other content is refused."""
    inspection = find_inspection(session, review.request_id)
    if inspection is None:
        raise NotFound(f"no inspection {review.request_id} to review")
    if review.decision not in ANSWERS or review.final_verdict not in ("PASS", "FAIL"):
        raise InvalidReview(f"decision must be {'|'.join(ANSWERS)} and final_verdict PASS|FAIL")
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
        via=review.via,
    )
    session.add(row)
    session.flush()
    review_recorded(session, inspection.id, row.id)
    _mark_users(session, [review.reviewer], [inspection.id])
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


def _mark(session: Session, user_ids: Sequence[int], inspection_ids: Sequence[int]) -> None:
    now = utcnow()
    rows = [
        {"user_id": uid, "inspection_id": iid, "marked_at": now}
        for uid in user_ids
        for iid in inspection_ids
    ]
    if rows:
        session.execute(_insert_ignoring_duplicates(session), rows)


def _user_ids(session: Session, usernames: Sequence[str]) -> list[int]:
    return list(session.scalars(sa.select(User.id).where(User.username.in_(list(usernames)))))


def _mark_users(session: Session, usernames: Sequence[str], inspection_ids: Sequence[int]) -> None:
    """Mark inspections reviewed for the review-app users of these names (scripts have none)."""
    _mark(session, _user_ids(session, usernames), inspection_ids)


def mark_reviewed(session: Session, user_id: int, request_ids: Sequence[str]) -> int:
    """Mark inspections reviewed by this user (already marked ones stay); return how many."""
    ids = list(
        session.scalars(sa.select(Inspection.id).where(Inspection.request_id.in_(request_ids)))
    )
    if len(ids) != len(set(request_ids)):
        raise NotFound("some of these inspections do not exist")
    _mark(session, [user_id], ids)
    return len(ids)


def withdraw_review(
    session: Session, user_id: int, username: str, request_id: str, via: str | None = None
) -> Review | None:
    """Put an inspection back in the queue: its answer stops counting everywhere.

    The answer that counted (if any) is withdrawn by an appended entry naming who withdrew
    it, so the history still shows both; the tallies, the queue's label and new dataset
    snapshots drop it. The withdrawing user's mark goes, and so does the mark of whoever
    recorded the withdrawn answer: it is no longer theirs to count. Returns the withdrawal.
    """
    iid = inspection_id(session, request_id)
    standing = session.scalar(
        sa.select(Review)
        .join(Inspection, Inspection.review_id == Review.id)
        .where(Inspection.id == iid)
    )
    unmark = [user_id]
    row = None
    if standing is not None:
        unmark += _user_ids(session, [standing.reviewer])
        row = Review(
            review_id=str(uuid4()),
            inspection_id=iid,
            verdict_id=standing.verdict_id,
            decision="withdraw",
            final_verdict=standing.final_verdict,
            defect_type=standing.defect_type,
            comment=None,
            reviewer=username,
            created_at=utcnow(),
            via=via,
        )
        session.add(row)
        session.flush()
        review_withdrawn(session, iid)
    session.execute(
        sa.delete(ReviewMark).where(ReviewMark.user_id.in_(unmark), ReviewMark.inspection_id == iid)
    )
    return row


def set_reviewed(
    session: Session, user_id: int, username: str, request_id: str, reviewed: bool
) -> None:
    """Mark one inspection reviewed by this user, or withdraw its answer (withdraw_review)."""
    if reviewed:
        mark_reviewed(session, user_id, [request_id])
    else:
        withdraw_review(session, user_id, username, request_id, via="api")
