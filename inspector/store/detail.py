"""One inspection as the review app shows it: media, every verdict, the review history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session, lazyload

from inspector.errors import NotFound
from inspector.store.filters import Cursor, reviewed_by
from inspector.store.models import Inspection, InspectionMedia, Media, Review, Verdict


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A photo or voice note of an inspection, by hash."""

    role: str
    sha256: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class VerdictView:
    """A stored verdict as the review app shows it."""

    id: int
    verdict: str
    confidence: float
    p_pass: float
    rationale: str
    rationale_state: str  # protocol.RationaleState: pending until the rationale arrives
    transcript: str | None
    defects: list[dict[str, Any]]
    model: str
    adapter: str
    adapter_fallback: bool
    prompt_version: str
    worker_id: str
    latency_ms: float
    decided_at: datetime
    note_disagrees: bool = False  # the operator's note contradicts this verdict
    rationale_reason: str | None = None  # why a not_produced rationale was not (a code)


@dataclass(frozen=True, slots=True)
class ReviewView:
    """One entry of an inspection's review history."""

    review_id: str
    verdict_id: int | None
    decision: str
    final_verdict: str
    defect_type: str | None
    comment: str | None
    reviewer: str
    created_at: datetime
    via: str | None = None  # page | bulk | api | demo

    @property
    def withdrawn(self) -> bool:
        """Whether this entry withdraws the answer before it (final_verdict says which)."""
        return self.decision == "withdraw"


@dataclass(frozen=True, slots=True)
class InspectionDetail:
    """Everything about one inspection: media, every verdict, the full review history."""

    id: int
    request_id: str
    site: str
    line: str
    station: str
    part_id: str
    captured_at: datetime
    received_at: datetime
    operator: str | None
    note: str | None
    media: list[MediaRef]
    verdicts: list[VerdictView] = field(default_factory=list)
    reviews: list[ReviewView] = field(default_factory=list)
    reviewed_by_me: bool = False

    @property
    def standing(self) -> ReviewView | None:
        """The answer that counts: the latest entry unless it is a withdrawal."""
        latest = self.reviews[-1] if self.reviews else None
        return None if latest is None or latest.withdrawn else latest

    @property
    def verdict(self) -> VerdictView | None:
        """The latest verdict: the one the queue shows."""
        return self.verdicts[-1] if self.verdicts else None

    @property
    def cursor(self) -> Cursor:
        """The key of this inspection in the queue order."""
        return Cursor(self.captured_at, self.id)


def _verdict_view(v: Verdict) -> VerdictView:
    return VerdictView(
        v.id,
        v.verdict,
        v.confidence,
        v.p_pass,
        v.rationale,
        v.rationale_state,
        v.transcript,
        list(v.defects),
        v.model,
        v.adapter,
        v.adapter_fallback,
        v.prompt_version,
        v.worker_id,
        v.latency_ms,
        v.decided_at,
        note_disagrees=v.note_disagrees,
        rationale_reason=v.rationale_reason,
    )


def review_view(r: Review) -> ReviewView:
    """A stored review as the history shows it."""
    return ReviewView(
        r.review_id,
        r.verdict_id,
        r.decision,
        r.final_verdict,
        r.defect_type,
        r.comment,
        r.reviewer,
        r.created_at,
        r.via,
    )


def parse_request_id(value: str) -> str:
    """A request_id in its stored spelling; NotFound for anything that is not a UUID."""
    try:
        return str(UUID(value))
    except ValueError:
        raise NotFound(f"no inspection {value[:80]!r}") from None


def inspection_id(session: Session, request_id: str) -> int:
    """The stored id of an inspection; NotFound if there is none."""
    iid = session.scalar(sa.select(Inspection.id).where(Inspection.request_id == request_id))
    if iid is None:
        raise NotFound(f"no inspection {request_id}")
    return iid


def inspection_detail(session: Session, request_id: str, user_id: int) -> InspectionDetail:
    """One inspection with its media, verdicts (oldest first) and reviews (oldest first)."""
    # Four queries: the inspection with the user's mark, its media, verdicts and reviews; the
    # relationships' own eager loads (media, each verdict's inspection) are not wanted here.
    found = session.execute(
        sa.select(Inspection, reviewed_by(user_id))
        .options(lazyload(Inspection.media))
        .where(Inspection.request_id == request_id)
    ).first()
    if found is None:
        raise NotFound(f"no inspection {request_id}")
    insp, marked = found
    verdicts = session.scalars(
        sa.select(Verdict)
        .options(lazyload(Verdict.inspection))
        .where(Verdict.inspection_id == insp.id)
        .order_by(Verdict.id)
    )
    reviews = session.scalars(
        sa.select(Review).where(Review.inspection_id == insp.id).order_by(Review.id)
    )
    return InspectionDetail(
        insp.id,
        insp.request_id,
        insp.site,
        insp.line,
        insp.station,
        insp.part_id,
        insp.captured_at,
        insp.received_at,
        insp.operator,
        insp.note,
        _media(session, InspectionMedia.inspection_id == insp.id),
        [_verdict_view(v) for v in verdicts],
        [review_view(r) for r in reviews],
        bool(marked),
    )


def review_history(session: Session, request_id: str) -> list[ReviewView]:
    """Every review of an inspection, oldest first."""
    iid = inspection_id(session, request_id)
    rows = session.scalars(sa.select(Review).where(Review.inspection_id == iid).order_by(Review.id))
    return [review_view(r) for r in rows]


def last_entry(session: Session, request_id: str) -> tuple[str, ReviewView] | None:
    """An inspection's part id and the newest entry of its review history, if it has one."""
    row = session.execute(
        sa.select(Inspection.part_id, Review)
        .join(Review, Review.inspection_id == Inspection.id)
        .where(Inspection.request_id == request_id)
        .order_by(Review.id.desc())
        .limit(1)
    ).first()
    return (row[0], review_view(row[1])) if row is not None else None


def media_ref(session: Session, sha256: str) -> MediaRef | None:
    """A stored blob's metadata, if any inspection's media has this hash."""
    row = session.execute(
        sa.select(Media.kind, Media.sha256, Media.content_type, Media.size).where(
            Media.sha256 == sha256
        )
    ).first()
    return MediaRef(row[0], row[1], row[2], row[3]) if row is not None else None


def media_of(session: Session, request_id: str) -> list[MediaRef]:
    """An inspection's media in order (photos first, then the voice note)."""
    iid = sa.select(Inspection.id).where(Inspection.request_id == request_id).scalar_subquery()
    return _media(session, InspectionMedia.inspection_id == iid)


def _media(session: Session, which: sa.ColumnElement[bool]) -> list[MediaRef]:
    rows = session.execute(
        sa.select(InspectionMedia.role, Media.sha256, Media.content_type, Media.size)
        .join(Media, Media.sha256 == InspectionMedia.sha256)
        .where(which)
        .order_by(InspectionMedia.position)
    )
    return [MediaRef(role, sha, ctype, size) for role, sha, ctype, size in rows]
