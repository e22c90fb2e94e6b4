"""Inspections: stored once per request_id with their media, looked up before inference."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import DuplicateConflict
from inspector.protocol import InspectionRequest, utcnow
from inspector.store.blobs import BlobStore
from inspector.store.database import Database
from inspector.store.models import Inspection, InspectionMedia, Media, Verdict


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


def known_requests(db: Database, request_ids: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """request_id → (stored fingerprint, has a verdict), for those already stored."""
    judged = sa.exists().where(Verdict.inspection_id == Inspection.id)
    query = sa.select(Inspection.request_id, Inspection.fingerprint, judged).where(
        Inspection.request_id.in_(list(request_ids))
    )
    with db.read() as session:
        rows = session.execute(query).all()
    return {rid: (fingerprint, bool(has)) for rid, fingerprint, has in rows}
