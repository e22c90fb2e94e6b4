"""Recording inspections, verdicts, reviews and rejections: each idempotent by its id.

Every function takes an open Session so a caller can put many records in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import DuplicateConflict, InspectorError, NotFound
from inspector.protocol import (
    Decision,
    DefectFinding,
    InspectionRequest,
    RejectionMessage,
    VerdictMessage,
    utcnow,
)
from inspector.store.blobs import BlobStore
from inspector.store.models import Inspection, InspectionMedia, Media, Rejection, Review, Verdict


def find_inspection(session: Session, request_id: UUID | str) -> Inspection | None:
    """The inspection stored for a request_id, if any."""
    return session.scalar(sa.select(Inspection).where(Inspection.request_id == str(request_id)))


def _media_parts(request: InspectionRequest) -> list[tuple[str, str, bytes]]:
    parts: list[tuple[str, str, bytes]] = [
        ("image", p.content_type, p.data) for p in request.images
    ]
    if request.audio is not None:
        parts.append(("audio", request.audio.content_type, request.audio.data))
    return parts


def record_inspections(
    session: Session, blobs: BlobStore, requests: Sequence[InspectionRequest]
) -> list[tuple[Inspection, bool]]:
    """Store requests and their media once each, in few statements; return (row, created).

    A request_id already stored with the same content is a no-op; with other content it
    raises DuplicateConflict.
    """
    ids = [str(r.request_id) for r in requests]
    rows: dict[str, Inspection] = {
        i.request_id: i
        for i in session.scalars(sa.select(Inspection).where(Inspection.request_id.in_(ids)))
    }
    fresh = [r for r in requests if str(r.request_id) not in rows]
    parts = {str(r.request_id): _media_parts(r) for r in fresh}
    written = blobs.put_many([data for ps in parts.values() for _, _, data in ps])
    shas = {sha for sha, _ in written}
    known = set(session.scalars(sa.select(Media.sha256).where(Media.sha256.in_(shas))))
    now = utcnow()
    out: list[tuple[Inspection, bool]] = []
    blob_iter = iter(written)
    for request in requests:
        rid, fingerprint = str(request.request_id), request.fingerprint()
        existing = rows.get(rid)
        if existing is not None:
            if existing.fingerprint != fingerprint:
                raise DuplicateConflict(rid)
            out.append((existing, False))
            continue
        inspection = Inspection(
            request_id=rid,
            fingerprint=fingerprint,
            site=request.site,
            line=request.line,
            station=request.station,
            part_id=request.part_id,
            captured_at=request.captured_at,
            received_at=now,
            operator=request.operator,
            note=request.note,
            adapter_hint=request.adapter,
        )
        for position, (kind, content_type, data) in enumerate(parts[rid]):
            sha, _ = next(blob_iter)
            if sha not in known:
                known.add(sha)
                session.add(
                    Media(
                        sha256=sha,
                        kind=kind,
                        content_type=content_type,
                        size=len(data),
                        path=blobs.relative_path(sha),
                        created_at=now,
                    )
                )
            inspection.media.append(InspectionMedia(position=position, role=kind, sha256=sha))
        session.add(inspection)
        rows[rid] = inspection
        out.append((inspection, True))
    session.flush()
    return out


def record_inspection(
    session: Session, blobs: BlobStore, request: InspectionRequest
) -> tuple[Inspection, bool]:
    """Store one request and its media once; return (row, created)."""
    return record_inspections(session, blobs, [request])[0]


def record_verdicts(
    session: Session, messages: Sequence[VerdictMessage]
) -> list[tuple[Verdict, bool]]:
    """Store verdicts once per (inspection, model, adapter, prompt version) each."""
    ids = [str(m.request_id) for m in messages]
    inspections = {
        i.request_id: i.id
        for i in session.scalars(sa.select(Inspection).where(Inspection.request_id.in_(ids)))
    }
    missing = [rid for rid in ids if rid not in inspections]
    if missing:
        raise NotFound(f"no inspection {missing[0]} to attach a verdict to")
    stored = {
        (v.inspection_id, v.model, v.adapter, v.prompt_version): v
        for v in session.scalars(
            sa.select(Verdict).where(Verdict.inspection_id.in_(inspections.values()))
        )
    }
    out: list[tuple[Verdict, bool]] = []
    for message in messages:
        inspection_id = inspections[str(message.request_id)]
        key = (inspection_id, message.model, message.adapter, message.prompt_version)
        existing = stored.get(key)
        if existing is not None:
            out.append((existing, False))
            continue
        row = Verdict(
            inspection_id=inspection_id,
            verdict=message.verdict.value,
            confidence=message.confidence,
            p_pass=message.p_pass,
            rationale=message.rationale,
            transcript=message.transcript,
            defects=[d.model_dump(exclude_none=True) for d in message.defects],
            model=message.model,
            adapter=message.adapter,
            adapter_fallback=message.adapter_fallback,
            prompt_version=message.prompt_version,
            worker_id=message.worker_id,
            latency_ms=message.latency_ms,
            decided_at=message.decided_at,
        )
        session.add(row)
        stored[key] = row
        out.append((row, True))
    session.flush()
    return out


def record_verdict(session: Session, message: VerdictMessage) -> tuple[Verdict, bool]:
    """Store one verdict once per (model, adapter, prompt version); return (row, created)."""
    return record_verdicts(session, [message])[0]


def latest_verdict(session: Session, request_id: UUID | str) -> Verdict | None:
    """The newest verdict for a request_id, if any."""
    return session.scalar(
        sa.select(Verdict)
        .join(Inspection)
        .where(Inspection.request_id == str(request_id))
        .order_by(Verdict.id.desc())
        .limit(1)
    )


def verdict_message(row: Verdict) -> VerdictMessage:
    """The wire message for a stored verdict (for re-publishing on redelivery)."""
    insp = row.inspection
    return VerdictMessage(
        request_id=UUID(insp.request_id),
        site=insp.site,
        line=insp.line,
        station=insp.station,
        part_id=insp.part_id,
        verdict=Decision(row.verdict),
        confidence=row.confidence,
        p_pass=row.p_pass,
        rationale=row.rationale,
        transcript=row.transcript,
        defects=[DefectFinding.model_validate(d) for d in row.defects],
        model=row.model,
        adapter=row.adapter,
        adapter_fallback=row.adapter_fallback,
        prompt_version=row.prompt_version,
        worker_id=row.worker_id,
        latency_ms=row.latency_ms,
        decided_at=_aware(row.decided_at),
    )


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def record_rejection(
    session: Session, message: RejectionMessage, topic: str, payload: bytes, keep_bytes: int
) -> tuple[Rejection, bool]:
    """Store a refusal with its payload (up to `keep_bytes`); once per (payload, topic)."""
    sha = hashlib.sha256(payload).hexdigest()
    if sha != message.payload_sha256:
        raise ValueError("rejection message does not describe this payload")
    existing = session.scalar(
        sa.select(Rejection).where(Rejection.payload_sha256 == sha, Rejection.topic == topic)
    )
    if existing is not None:
        return existing, False
    row = Rejection(
        request_id=str(message.request_id) if message.request_id else None,
        topic=topic[:255],
        site=message.site,
        line=message.line,
        station=message.station,
        code=message.code,
        message=message.message,
        payload_sha256=sha,
        payload_size=len(payload),
        payload=payload if len(payload) <= keep_bytes else None,
        worker_id=message.worker_id,
        rejected_at=message.rejected_at,
    )
    session.add(row)
    session.flush()
    return row, True


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


class ReviewConflict(InspectorError):
    """A review_id already stored arrived again with different content."""


def record_review(session: Session, review: ReviewInput) -> tuple[Review, bool]:
    """Append a review once per review_id; the same id with other content is refused."""
    inspection = find_inspection(session, review.request_id)
    if inspection is None:
        raise NotFound(f"no inspection {review.request_id} to review")
    if review.decision not in ("confirm", "override") or review.final_verdict not in (
        "PASS",
        "FAIL",
    ):
        raise ValueError("decision must be confirm|override and final_verdict PASS|FAIL")
    if not review.reviewer.strip():
        raise ValueError("a review needs the reviewer's name")
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
    return row, True
