"""Media retention: delete old photo and voice-note blobs, keep every row and an audit trail.

A blob is old when no inspection received at or after the cut-off references it (blobs are
shared by content, so one photo sent again last week keeps its file). Inspections, verdicts,
reviews, media rows and their links all stay: only the bytes go, each removal recorded in
`removed_media` under its `retention_runs` row. Blobs of inspections in a dataset snapshot
stay unless the caller includes snapshots, so an adapter's training data can be rebuilt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.protocol import utcnow
from inspector.store.blobs import BlobStore
from inspector.store.database import Database
from inspector.store.models import (
    DatasetItem,
    Inspection,
    InspectionMedia,
    Media,
    RemovedMedia,
    RetentionRun,
)

BATCH = 500


@dataclass(frozen=True)
class OldBlob:
    """A blob that only inspections older than the cut-off reference."""

    sha256: str
    kind: str
    size: int
    last_used_at: datetime


@dataclass(frozen=True)
class RetentionPlan:
    """What a run would remove (a dry run shows this and stops)."""

    cutoff: datetime
    include_snapshots: bool
    blobs: tuple[OldBlob, ...]
    inspections: int
    kept_for_snapshots: int
    already_gone: int

    @property
    def bytes(self) -> int:
        """Bytes the run would free."""
        return sum(b.size for b in self.blobs)

    def by_kind(self) -> dict[str, int]:
        """Blob count per kind (image, audio)."""
        return dict(Counter(b.kind for b in self.blobs))


@dataclass
class RetentionResult:
    """What an applied run removed, under its audit row's id."""

    run_id: int
    removed: int = 0
    bytes: int = 0
    skipped_now_young: int = 0
    kinds: Counter[str] = field(default_factory=Counter)


def _old_media(cutoff: datetime, include_snapshots: bool) -> sa.Select[str, str, int, datetime]:
    """Media whose newest referencing inspection (or, unreferenced, the row) predates cutoff."""
    last_used = sa.func.coalesce(sa.func.max(Inspection.received_at), Media.created_at)
    query = (
        sa.select(Media.sha256, Media.kind, Media.size, last_used.label("last_used_at"))
        .outerjoin(InspectionMedia, InspectionMedia.sha256 == Media.sha256)
        .outerjoin(Inspection, Inspection.id == InspectionMedia.inspection_id)
        .group_by(Media.sha256, Media.kind, Media.size, Media.created_at)
        .having(last_used < cutoff)
    )
    if not include_snapshots:
        query = query.where(Media.sha256.not_in(_snapshot_media()))
    return query


def _snapshot_media() -> sa.Select[str]:
    """Blobs of inspections frozen into any dataset snapshot (an adapter may be retrained)."""
    return sa.select(InspectionMedia.sha256).join(
        DatasetItem, DatasetItem.inspection_id == InspectionMedia.inspection_id
    )


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def plan_retention(
    db: Database, blobs: BlobStore, cutoff: datetime, include_snapshots: bool = False
) -> RetentionPlan:
    """The blobs a run with this cut-off would remove; writes nothing."""
    with db.read() as session:
        rows = session.execute(_old_media(cutoff, include_snapshots)).all()
        everything = session.execute(_old_media(cutoff, include_snapshots=True)).all()
        old = [OldBlob(r.sha256, r.kind, r.size, r.last_used_at) for r in rows]
        recorded = _recorded(session, [b.sha256 for b in old])
        # A file gone without its audit row (a run stopped mid-batch) is recorded again.
        todo = [b for b in old if blobs.present(b.sha256) or b.sha256 not in recorded]
        inspections = _inspections_using(session, [b.sha256 for b in todo])
    kept = len({r.sha256 for r in everything} - {r.sha256 for r in rows})
    return RetentionPlan(
        cutoff=cutoff,
        include_snapshots=include_snapshots,
        blobs=tuple(todo),
        inspections=inspections,
        kept_for_snapshots=kept,
        already_gone=len(old) - len(todo),
    )


def _recorded(session: Session, hashes: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(hashes, BATCH):
        found.update(
            session.scalars(
                sa.select(RemovedMedia.sha256).where(RemovedMedia.sha256.in_(chunk)).distinct()
            )
        )
    return found


def _inspections_using(session: Session, hashes: Sequence[str]) -> int:
    ids: set[int] = set()
    for chunk in _chunks(hashes, BATCH):
        ids.update(
            session.scalars(
                sa.select(InspectionMedia.inspection_id).where(InspectionMedia.sha256.in_(chunk))
            )
        )
    return len(ids)


def apply_retention(
    db: Database, blobs: BlobStore, plan: RetentionPlan, actor: str
) -> RetentionResult:
    """Remove the plan's blobs in batches, each checked again and audited in its transaction.

    A file is deleted inside the transaction that records it and the commit follows: a crash
    in between leaves a missing file without its audit row, and the next run records it.
    """
    with db.write() as session:
        run = RetentionRun(
            cutoff=plan.cutoff,
            include_snapshots=plan.include_snapshots,
            media_removed=0,
            bytes_removed=0,
            media_kept_for_snapshots=plan.kept_for_snapshots,
            actor=actor[:128],
            started_at=utcnow(),
            finished_at=None,
        )
        session.add(run)
        session.flush()
        result = RetentionResult(run.id)
    planned = [b.sha256 for b in plan.blobs]
    for chunk in _chunks(planned, BATCH):
        with db.write() as session:
            # An inspection that arrived since the plan may reference a blob again.
            still_old = session.execute(
                _old_media(plan.cutoff, plan.include_snapshots).where(Media.sha256.in_(chunk))
            ).all()
            result.skipped_now_young += len(chunk) - len(still_old)
            now = utcnow()
            for row in still_old:
                blobs.remove(row.sha256)
                session.add(
                    RemovedMedia(
                        run_id=result.run_id,
                        sha256=row.sha256,
                        kind=row.kind,
                        size=row.size,
                        last_used_at=row.last_used_at,
                        removed_at=now,
                    )
                )
                result.removed += 1
                result.bytes += row.size
                result.kinds[row.kind] += 1
    with db.write() as session:
        session.execute(
            sa.update(RetentionRun)
            .where(RetentionRun.id == result.run_id)
            .values(media_removed=result.removed, bytes_removed=result.bytes, finished_at=utcnow())
        )
    return result
