"""Reading verdicts back: filtered listings and flat rows for CSV/JSONL export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.protocol import PART_FIELDS, VERDICT_FIELDS
from inspector.store.models import Inspection, Verdict

# The part, when it was captured, then the verdict's own fields in their defined order.
EXPORT_COLUMNS: tuple[str, ...] = (*PART_FIELDS, "captured_at", *VERDICT_FIELDS)


@dataclass(frozen=True, slots=True)
class VerdictFilter:
    """Which verdicts to list; dates bound the inspection's capture time."""

    site: str | None = None
    line: str | None = None
    station: str | None = None
    verdict: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        """The filter as SQL conditions."""
        conds: list[sa.ColumnElement[bool]] = []
        if self.site:
            conds.append(Inspection.site == self.site)
        if self.line:
            conds.append(Inspection.line == self.line)
        if self.station:
            conds.append(Inspection.station == self.station)
        if self.verdict:
            conds.append(Verdict.verdict == self.verdict)
        if self.since:
            conds.append(Inspection.captured_at >= self.since)
        if self.until:
            conds.append(Inspection.captured_at < self.until)
        return conds


def list_verdicts(
    session: Session, flt: VerdictFilter, limit: int | None = 100, offset: int = 0
) -> list[Verdict]:
    """Verdicts matching the filter, newest capture first."""
    stmt = (
        sa.select(Verdict)
        .join(Inspection)
        .where(*flt.where())
        .order_by(Inspection.captured_at.desc(), Verdict.id.desc())
        .offset(offset)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def export_row(row: Verdict) -> dict[str, Any]:
    """A verdict with its inspection as one flat record."""
    insp = row.inspection
    record: dict[str, Any] = {name: getattr(insp, name) for name in PART_FIELDS}
    record["captured_at"] = _iso(insp.captured_at)
    record.update((name, getattr(row, name)) for name in VERDICT_FIELDS)
    record["decided_at"] = _iso(row.decided_at)
    return record


def iter_export(
    session: Session, flt: VerdictFilter, chunk: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every matching verdict as flat records, fetched in chunks so memory stays flat."""
    offset = 0
    while True:
        rows = list_verdicts(session, flt, limit=chunk, offset=offset)
        if not rows:
            return
        yield from (export_row(r) for r in rows)
        offset += len(rows)
