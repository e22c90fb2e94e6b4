"""Training data from reviews: a site's reviewed inspections and frozen dataset snapshots.

A snapshot is written once and never changed: its items keep the label and target text
they were frozen with, so a training run and its evaluation can be repeated exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import Code, RegistryRefused
from inspector.protocol import utcnow
from inspector.store.models import (
    DatasetItem,
    DatasetSnapshot,
    Inspection,
    InspectionMedia,
    Media,
    Review,
    Verdict,
)


@dataclass(frozen=True, slots=True)
class MediaRef:
    """One photo or voice note of an inspection, by its blob hash."""

    role: str  # image | audio
    sha256: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Reviewed:
    """A reviewed inspection with its latest review and the verdict that review judged."""

    inspection_id: int
    request_id: str
    captured_at: datetime
    note: str | None
    media: tuple[MediaRef, ...]
    review_id: int
    decision: str  # confirm | override
    final_verdict: str  # PASS | FAIL
    comment: str | None
    defect_type: str | None
    reviewer: str
    verdict_rationale: str | None  # of the reviewed verdict, if any


@dataclass(frozen=True, slots=True)
class ItemInput:
    """One item of a snapshot to be saved."""

    inspection_id: int
    review_id: int
    split: str  # train | holdout
    label: str
    target: str


@dataclass(frozen=True, slots=True)
class SnapshotItem:
    """One frozen example: the inspection's media and note, its label and target."""

    position: int
    inspection_id: int
    request_id: str
    review_id: int
    captured_at: datetime
    split: str
    label: str
    target: str
    note: str | None
    media: tuple[MediaRef, ...]


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A saved dataset snapshot."""

    id: int
    site: str
    content_hash: str
    since: datetime | None
    until: datetime | None
    holdout_share: float
    counts: dict[str, Any]
    created_by: str
    created_at: datetime
    items: tuple[SnapshotItem, ...]

    def split(self, name: str) -> list[SnapshotItem]:
        """The items of one split (train or holdout), in time order."""
        return [item for item in self.items if item.split == name]


def _media(session: Session, inspection_ids: Sequence[int]) -> dict[int, tuple[MediaRef, ...]]:
    out: dict[int, list[MediaRef]] = {}
    stmt = (
        sa.select(
            InspectionMedia.inspection_id,
            InspectionMedia.role,
            InspectionMedia.sha256,
            Media.content_type,
        )
        .join(Media, Media.sha256 == InspectionMedia.sha256)
        .where(InspectionMedia.inspection_id.in_(list(inspection_ids)))
        .order_by(InspectionMedia.inspection_id, InspectionMedia.position)
    )
    for iid, role, sha, content_type in session.execute(stmt):
        out.setdefault(iid, []).append(MediaRef(role, sha, content_type))
    return {iid: tuple(refs) for iid, refs in out.items()}


def reviewed_inspections(
    session: Session, site: str, since: datetime | None = None, until: datetime | None = None
) -> list[Reviewed]:
    """The site's inspections that have an answer that counts, each with it, oldest first.

    The answer that counts is the inspection's own `review_id` (store.tallies keeps it: the
    latest review, none after a withdrawal), so a withdrawn answer never becomes a label;
    `since` and `until` bound the capture time (until is exclusive).
    """
    stmt = (
        sa.select(Inspection, Review, Verdict.rationale)
        .join(Review, Review.id == Inspection.review_id)
        .outerjoin(Verdict, Verdict.id == Review.verdict_id)
        .where(Inspection.site == site)
        .order_by(Inspection.captured_at, Inspection.id)
    )
    if since is not None:
        stmt = stmt.where(Inspection.captured_at >= since)
    if until is not None:
        stmt = stmt.where(Inspection.captured_at < until)
    rows = session.execute(stmt).all()
    media = _media(session, [insp.id for insp, _, _ in rows])
    return [
        Reviewed(
            inspection_id=insp.id,
            request_id=insp.request_id,
            captured_at=insp.captured_at,
            note=insp.note,
            media=media.get(insp.id, ()),
            review_id=review.id,
            decision=review.decision,
            final_verdict=review.final_verdict,
            comment=review.comment,
            defect_type=review.defect_type,
            reviewer=review.reviewer,
            verdict_rationale=rationale,
        )
        for insp, review, rationale in rows
    ]


def save_snapshot(
    session: Session,
    *,
    site: str,
    content_hash: str,
    since: datetime | None,
    until: datetime | None,
    holdout_share: float,
    counts: dict[str, Any],
    items: Sequence[ItemInput],
    actor: str,
) -> int:
    """Freeze a snapshot with its items in order; returns its id."""
    row = DatasetSnapshot(
        site=site,
        content_hash=content_hash,
        since=since,
        until=until,
        holdout_share=holdout_share,
        counts=counts,
        created_by=actor,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    if items:
        session.execute(
            sa.insert(DatasetItem),
            [
                {
                    "snapshot_id": row.id,
                    "position": position,
                    "inspection_id": item.inspection_id,
                    "review_id": item.review_id,
                    "split": item.split,
                    "label": item.label,
                    "target": item.target,
                }
                for position, item in enumerate(items)
            ],
        )
    return row.id


def load_snapshot(session: Session, snapshot_id: int) -> SnapshotRecord:
    """A saved snapshot with every item's media, in the order it was frozen."""
    snap = session.get(DatasetSnapshot, snapshot_id)
    if snap is None:
        raise RegistryRefused(Code.ADAPTER_NOT_FOUND, f"no dataset snapshot {snapshot_id}")
    stmt = (
        sa.select(DatasetItem, Inspection.request_id, Inspection.captured_at, Inspection.note)
        .join(Inspection, Inspection.id == DatasetItem.inspection_id)
        .where(DatasetItem.snapshot_id == snapshot_id)
        .order_by(DatasetItem.position)
    )
    rows = session.execute(stmt).all()
    media = _media(session, [item.inspection_id for item, _, _, _ in rows])
    items = tuple(
        SnapshotItem(
            position=item.position,
            inspection_id=item.inspection_id,
            request_id=request_id,
            review_id=item.review_id,
            captured_at=captured_at,
            split=item.split,
            label=item.label,
            target=item.target,
            note=note,
            media=media.get(item.inspection_id, ()),
        )
        for item, request_id, captured_at, note in rows
    )
    return SnapshotRecord(
        id=snap.id,
        site=snap.site,
        content_hash=snap.content_hash,
        since=snap.since,
        until=snap.until,
        holdout_share=snap.holdout_share,
        counts=dict(snap.counts),
        created_by=snap.created_by,
        created_at=snap.created_at,
        items=items,
    )
