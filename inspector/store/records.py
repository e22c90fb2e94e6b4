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
    VERDICT_FIELDS,
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
) -> list[tuple[int, bool]]:
    """Store requests and their media once each, in few statements; return (id, created).

    A request_id already stored with the same content is a no-op; with other content it
    raises DuplicateConflict.
    """
    ids = [str(r.request_id) for r in requests]
    stored: dict[str, tuple[int, str]] = {
        rid: (iid, fingerprint)
        for rid, iid, fingerprint in session.execute(
            sa.select(Inspection.request_id, Inspection.id, Inspection.fingerprint).where(
                Inspection.request_id.in_(ids)
            )
        )
    }
    fresh: dict[str, tuple[InspectionRequest, str]] = {}  # request_id → (request, fingerprint)
    for request in requests:
        rid, fingerprint = str(request.request_id), request.fingerprint()
        seen = stored.get(rid) or fresh.get(rid)
        if seen is not None and seen[1] != fingerprint:
            raise DuplicateConflict(rid)
        if seen is None:
            fresh[rid] = (request, fingerprint)
    if fresh:
        _insert(session, blobs, list(fresh.values()), stored)
    created = set(fresh)
    out: list[tuple[int, bool]] = []
    for rid in ids:
        out.append((stored[rid][0], rid in created))
        created.discard(rid)  # a request_id twice in one call is created once
    return out


def _insert(
    session: Session,
    blobs: BlobStore,
    fresh: list[tuple[InspectionRequest, str]],
    stored: dict[str, tuple[int, str]],
) -> None:
    """Insert new inspections, their media rows and links; add their ids to `stored`."""
    requests = [r for r, _ in fresh]
    parts = [_media_parts(r) for r in requests]
    written = iter(blobs.put_many([data for ps in parts for _, _, data in ps]))
    now = utcnow()
    rows = session.execute(
        sa.insert(Inspection).returning(
            Inspection.id, Inspection.request_id, sort_by_parameter_order=True
        ),
        [
            {
                "request_id": str(r.request_id),
                "fingerprint": fingerprint,
                "site": r.site,
                "line": r.line,
                "station": r.station,
                "part_id": r.part_id,
                "captured_at": r.captured_at,
                "received_at": now,
                "operator": r.operator,
                "note": r.note,
                "adapter_hint": r.adapter,
            }
            for r, fingerprint in fresh
        ],
    ).all()
    media: dict[str, dict[str, object]] = {}
    links: list[dict[str, object]] = []
    for (iid, rid), (_, fingerprint), request_parts in zip(rows, fresh, parts, strict=True):
        stored[rid] = (iid, fingerprint)
        for position, (kind, content_type, data) in enumerate(request_parts):
            sha, _ = next(written)
            media.setdefault(
                sha,
                {
                    "sha256": sha,
                    "kind": kind,
                    "content_type": content_type,
                    "size": len(data),
                    "path": blobs.relative_path(sha),
                    "created_at": now,
                },
            )
            links.append({"inspection_id": iid, "position": position, "role": kind, "sha256": sha})
    present = set(session.scalars(sa.select(Media.sha256).where(Media.sha256.in_(media))))
    missing = [row for sha, row in media.items() if sha not in present]
    if missing:
        session.execute(sa.insert(Media), missing)
    session.execute(sa.insert(InspectionMedia), links)


def record_inspection(
    session: Session, blobs: BlobStore, request: InspectionRequest
) -> tuple[Inspection, bool]:
    """Store one request and its media once; return (row, created)."""
    ((iid, created),) = record_inspections(session, blobs, [request])
    row = session.get(Inspection, iid)
    assert row is not None
    return row, created


def record_verdicts(session: Session, messages: Sequence[VerdictMessage]) -> list[tuple[int, bool]]:
    """Store verdicts once per (inspection, model, adapter, prompt version): (id, created)."""
    ids = [str(m.request_id) for m in messages]
    inspections: dict[str, int] = {
        rid: iid
        for rid, iid in session.execute(
            sa.select(Inspection.request_id, Inspection.id).where(Inspection.request_id.in_(ids))
        )
    }
    missing = [rid for rid in ids if rid not in inspections]
    if missing:
        raise NotFound(f"no inspection {missing[0]} to attach a verdict to")
    stored = {
        (iid, model, adapter, version): vid
        for vid, iid, model, adapter, version in session.execute(
            sa.select(
                Verdict.id,
                Verdict.inspection_id,
                Verdict.model,
                Verdict.adapter,
                Verdict.prompt_version,
            ).where(Verdict.inspection_id.in_(inspections.values()))
        )
    }
    out: list[tuple[int, bool]] = []
    rows: list[dict[str, object]] = []
    pending: dict[tuple[int, str, str, str], int] = {}  # key → index in rows
    waiting: list[tuple[int, tuple[int, str, str, str], bool]] = []  # (slot, key, created)
    for message in messages:
        key = (
            inspections[str(message.request_id)],
            message.model,
            message.adapter,
            message.prompt_version,
        )
        if key in stored:
            out.append((stored[key], False))
            continue
        created = key not in pending
        if created:
            pending[key] = len(rows)
            rows.append(_verdict_row(key[0], message))
        waiting.append((len(out), key, created))
        out.append((0, created))  # the id is known after the insert below
    if rows:
        new_ids = session.scalars(
            sa.insert(Verdict).returning(Verdict.id, sort_by_parameter_order=True), rows
        ).all()
        for slot, key, created in waiting:
            out[slot] = (new_ids[pending[key]], created)
    return out


def _verdict_row(inspection_id: int, message: VerdictMessage) -> dict[str, object]:
    row: dict[str, object] = {"inspection_id": inspection_id}
    row.update((name, getattr(message, name)) for name in VERDICT_FIELDS)
    row["verdict"] = message.verdict.value
    row["defects"] = [d.model_dump(exclude_none=True) for d in message.defects]
    return row


def record_verdict(session: Session, message: VerdictMessage) -> tuple[Verdict, bool]:
    """Store one verdict once per (model, adapter, prompt version); return (row, created)."""
    ((vid, created),) = record_verdicts(session, [message])
    row = session.get(Verdict, vid)
    assert row is not None
    return row, created


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
    fields = {name: getattr(row, name) for name in VERDICT_FIELDS}
    fields["decided_at"] = _aware(row.decided_at)
    return VerdictMessage(
        request_id=UUID(insp.request_id),
        site=insp.site,
        line=insp.line,
        station=insp.station,
        part_id=insp.part_id,
        **fields,
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
