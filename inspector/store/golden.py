"""Golden parts: reviewed inspections the canary re-sends to every worker, with what each
worker must answer.

Marking freezes the expectation: the PASS/FAIL of the review that counts at that moment, and
the P(PASS) of the verdict that was reviewed as the reference of that verdict's adapter
version. A later review does not move it (unmark, then mark again). An adapter version with
no reference yet gets one from the first canary answer it gives (`reference_p_pass`): a
promoted adapter may legitimately move P(PASS), the same version may not. Every mark and
unmark is audited in `golden_audit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inspector.errors import NotFound, NotReviewed
from inspector.protocol import AudioPart, ImagePart, InspectionRequest, utcnow
from inspector.quality.decision import Decision
from inspector.store.blobs import BlobStore
from inspector.store.inspections import find_inspection
from inspector.store.models import (
    GoldenAudit,
    GoldenPart,
    GoldenReference,
    Inspection,
    Media,
    Review,
    Verdict,
)

# Placeholder request id of a golden part's request: the canary sends each copy with its own.
_NIL = UUID(int=0)


@dataclass(frozen=True, slots=True)
class GoldenView:
    """A golden part as people see it: which inspection, what it must be, who marked it."""

    request_id: str
    site: str
    line: str
    station: str
    part_id: str
    expected: Decision
    marked_by: str
    marked_at: datetime


@dataclass(frozen=True, slots=True)
class GoldenCase:
    """A golden part as the canary sends it: its id, expectation and the stored request."""

    golden_id: int
    request_id: str  # the original inspection's
    expected: Decision
    request: InspectionRequest  # request_id is a placeholder: send a copy with a fresh one


def _view(part: GoldenPart, inspection: Inspection) -> GoldenView:
    return GoldenView(
        request_id=inspection.request_id,
        site=inspection.site,
        line=inspection.line,
        station=inspection.station,
        part_id=inspection.part_id,
        expected=Decision(part.expected),
        marked_by=part.marked_by,
        marked_at=part.marked_at,
    )


def _inspection(session: Session, request_id: UUID | str) -> Inspection:
    inspection = find_inspection(session, request_id)
    if inspection is None:
        raise NotFound(f"no inspection {request_id}")
    return inspection


def _golden_of(session: Session, inspection_id: int) -> GoldenPart | None:
    return session.scalar(sa.select(GoldenPart).where(GoldenPart.inspection_id == inspection_id))


def mark_golden(session: Session, request_id: UUID | str, actor: str) -> tuple[GoldenView, bool]:
    """Mark a reviewed inspection golden (False: it already was; its expectation stands)."""
    inspection = _inspection(session, request_id)
    existing = _golden_of(session, inspection.id)
    if existing is not None:
        return _view(existing, inspection), False
    review = session.get(Review, inspection.review_id) if inspection.review_id else None
    if review is None:
        raise NotReviewed(
            f"inspection {request_id} has no review that counts; review it first, then mark it"
        )
    now = utcnow()
    part = GoldenPart(
        inspection_id=inspection.id,
        review_id=review.id,
        expected=review.final_verdict,
        marked_by=actor,
        marked_at=now,
    )
    session.add(part)
    session.flush()
    verdict = session.get(Verdict, review.verdict_id) if review.verdict_id else None
    if verdict is not None:
        session.add(
            GoldenReference(
                golden_id=part.id,
                adapter=verdict.adapter,
                adapter_version=verdict.adapter_version or 0,
                p_pass=verdict.p_pass,
                source="review",
                recorded_at=now,
            )
        )
    session.add(
        GoldenAudit(
            inspection_id=inspection.id,
            action="mark",
            expected=review.final_verdict,
            actor=actor,
            at=now,
        )
    )
    return _view(part, inspection), True


def unmark_golden(session: Session, request_id: UUID | str, actor: str) -> bool:
    """Stop sending an inspection as a golden part (False: it was not one)."""
    inspection = _inspection(session, request_id)
    part = _golden_of(session, inspection.id)
    if part is None:
        return False
    session.add(
        GoldenAudit(
            inspection_id=inspection.id,
            action="unmark",
            expected=part.expected,
            actor=actor,
            at=utcnow(),
        )
    )
    session.execute(sa.delete(GoldenReference).where(GoldenReference.golden_id == part.id))
    session.delete(part)
    return True


def golden_of(session: Session, request_id: UUID | str) -> GoldenView | None:
    """The golden mark of one inspection, if it has one."""
    inspection = _inspection(session, request_id)
    part = _golden_of(session, inspection.id)
    return _view(part, inspection) if part is not None else None


def list_golden(session: Session, site: str | None = None) -> list[GoldenView]:
    """Every golden part (of one site), oldest mark first."""
    query = (
        sa.select(GoldenPart, Inspection)
        .join(Inspection, Inspection.id == GoldenPart.inspection_id)
        .order_by(GoldenPart.marked_at, GoldenPart.id)
    )
    if site is not None:
        query = query.where(Inspection.site == site)
    return [_view(part, inspection) for part, inspection in session.execute(query).all()]


def golden_cases(session: Session, blobs: BlobStore) -> list[GoldenCase]:
    """Every golden part with its stored request rebuilt from the rows and the blobs."""
    rows = session.execute(
        sa.select(GoldenPart, Inspection)
        .join(Inspection, Inspection.id == GoldenPart.inspection_id)
        .order_by(GoldenPart.id)
    ).all()
    return [
        GoldenCase(
            part.id,
            inspection.request_id,
            Decision(part.expected),
            _request(session, blobs, inspection),
        )
        for part, inspection in rows
    ]


def _request(session: Session, blobs: BlobStore, inspection: Inspection) -> InspectionRequest:
    types = dict(
        session.execute(
            sa.select(Media.sha256, Media.content_type).where(
                Media.sha256.in_([m.sha256 for m in inspection.media])
            )
        ).all()
    )
    images: list[ImagePart] = []
    audio: AudioPart | None = None
    for media in inspection.media:
        data = blobs.get(media.sha256)
        if media.role == "image":
            images.append(ImagePart.from_bytes(types[media.sha256], data))
        else:
            audio = AudioPart.from_bytes(types[media.sha256], data)
    return InspectionRequest(
        request_id=_NIL,
        site=inspection.site,
        line=inspection.line,
        station=inspection.station,
        part_id=inspection.part_id,
        captured_at=inspection.captured_at,
        images=images,
        audio=audio,
        operator=inspection.operator,
        note=inspection.note,
        adapter=inspection.adapter_hint,
    )


def reference_p_pass(
    session: Session,
    golden_id: int,
    adapter: str,
    adapter_version: int | None,
    p_pass: float,
    source: str,
) -> float:
    """The reference P(PASS) of a golden part for one adapter version.

    The one recorded, or else `p_pass` itself, recorded now as the reference (the first
    answer of a version no one answered before sets it).
    """
    version = adapter_version or 0
    query = sa.select(GoldenReference.p_pass).where(
        GoldenReference.golden_id == golden_id,
        GoldenReference.adapter == adapter,
        GoldenReference.adapter_version == version,
    )
    found = session.scalar(query)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            session.add(
                GoldenReference(
                    golden_id=golden_id,
                    adapter=adapter,
                    adapter_version=version,
                    p_pass=p_pass,
                    source=source[:80],
                    recorded_at=utcnow(),
                )
            )
    except IntegrityError:
        # A concurrent first answer recorded it (or the part was unmarked meanwhile).
        return session.scalar(query) or p_pass
    return p_pass
