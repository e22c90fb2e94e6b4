"""Verdicts: recorded once per (inspection, model, adapter, prompt version), listed, exported.

Every field comes from `protocol.Judgement` (via VERDICT_FIELDS): the row mapping, the wire
message rebuilt from a row and the export columns take their names from there. Listings
and exports page by key (capture time, then id), so rows arriving meanwhile neither shift
nor repeat a page.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import InvalidInput, NotFound
from inspector.protocol import PART_FIELDS, VERDICT_FIELDS, VerdictMessage
from inspector.store.models import Inspection, Verdict, utc
from inspector.store.tallies import verdicts_recorded

# The part, when it was captured, then the verdict's own fields in their defined order.
EXPORT_COLUMNS: tuple[str, ...] = (*PART_FIELDS, "captured_at", *VERDICT_FIELDS)


@dataclass(frozen=True, slots=True)
class VerdictFilter:
    """Which verdicts to list; dates bound the inspection's capture time, confidence inclusive."""

    site: str | None = None
    line: str | None = None
    station: str | None = None
    verdict: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    adapter: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    part_id: str | None = None  # a prefix

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
            conds.append(Inspection.captured_at >= utc(self.since))
        if self.until:
            conds.append(Inspection.captured_at < utc(self.until))
        if self.adapter:
            conds.append(Verdict.adapter == self.adapter)
        if self.min_confidence is not None:
            conds.append(Verdict.confidence >= self.min_confidence)
        if self.max_confidence is not None:
            conds.append(Verdict.confidence <= self.max_confidence)
        if self.part_id:
            conds.append(Inspection.part_id.startswith(self.part_id, autoescape=True))
        return conds

    @property
    def needs_verdicts(self) -> bool:
        """Whether the conditions name the verdicts table (not only the inspection)."""
        return (
            any((self.verdict, self.adapter, self.min_confidence is not None))
            or self.max_confidence is not None
        )


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
        verdicts_recorded(session, [(key[0], new_ids[i]) for key, i in pending.items()])
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
    fields["decided_at"] = utc(row.decided_at)
    return VerdictMessage(
        request_id=UUID(insp.request_id),
        site=insp.site,
        line=insp.line,
        station=insp.station,
        part_id=insp.part_id,
        **fields,
    )


def stored_verdict_message(session: Session, verdict_id: int) -> VerdictMessage:
    """The wire message of the stored verdict with this id."""
    return verdict_message(session.get_one(Verdict, verdict_id))


def latest_verdict_message(session: Session, request_id: UUID | str) -> VerdictMessage:
    """The wire message of the newest verdict for a request_id (it must have one)."""
    row = latest_verdict(session, request_id)
    if row is None:
        raise NotFound(f"no verdict stored for request {request_id}")
    return verdict_message(row)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last verdict's capture time and id (the listing's key)."""

    captured_at: datetime
    verdict_id: int

    @classmethod
    def after(cls, row: Verdict) -> Cursor:
        """The cursor just past `row`."""
        return cls(utc(row.inspection.captured_at), row.id)

    def token(self) -> str:
        """The cursor as text a user can pass back (`verdicts list --after`)."""
        return f"{utc(self.captured_at).isoformat()}~{self.verdict_id}"

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """A cursor from :meth:`token`'s text; InvalidInput says what is wrong with it."""
        when, sep, ident = token.rpartition("~")
        try:
            if not sep or not ident.isdigit():
                raise ValueError
            captured = datetime.fromisoformat(when)
        except ValueError:
            raise InvalidInput(
                "the cursor is not one a listing printed (capture time~verdict id)"
            ) from None
        if captured.tzinfo is None:
            raise InvalidInput("the cursor's capture time has no time zone")
        return cls(utc(captured), int(ident))


def list_verdicts(
    session: Session, flt: VerdictFilter, limit: int | None = 100, after: Cursor | None = None
) -> list[Verdict]:
    """Verdicts matching the filter, newest capture first; `after` continues a listing."""
    stmt = sa.select(Verdict).join(Inspection).where(*flt.where())
    if after is not None:
        stmt = stmt.where(
            sa.or_(
                Inspection.captured_at < after.captured_at,
                sa.and_(Inspection.captured_at == after.captured_at, Verdict.id < after.verdict_id),
            )
        )
    stmt = stmt.order_by(Inspection.captured_at.desc(), Verdict.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def _iso(value: datetime) -> str:
    return utc(value).isoformat()


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
    """Every matching verdict as flat records, page by page (by key) so memory stays flat."""
    after: Cursor | None = None
    while True:
        rows = list_verdicts(session, flt, limit=chunk, after=after)
        if not rows:
            return
        yield from (export_row(r) for r in rows)
        after = Cursor.after(rows[-1])
