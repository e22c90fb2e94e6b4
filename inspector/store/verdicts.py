"""Verdicts: recorded once per (inspection, model, adapter, prompt version), listed.

Every field comes from `protocol.Judgement` (via VERDICT_FIELDS): the row mapping and the
wire message rebuilt from a row take their names from there. The listing pages by key
(store.filters), so verdicts arriving meanwhile neither shift nor repeat a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import NotFound
from inspector.protocol import VERDICT_FIELDS, VerdictMessage
from inspector.store.filters import Cursor, VerdictFilter, newest_first, older
from inspector.store.models import Inspection, Verdict
from inspector.store.tallies import verdicts_recorded


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
    row["rationale_state"] = message.rationale_state.value
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


def list_verdicts(
    session: Session, flt: VerdictFilter, limit: int | None = 100, after: Cursor | None = None
) -> list[Verdict]:
    """Verdicts matching the filter, newest capture first; `after` continues a listing."""
    stmt = sa.select(Verdict).join(Inspection).where(*flt.where())
    if after is not None:
        stmt = stmt.where(older(after, Verdict.id))
    stmt = stmt.order_by(*newest_first(Verdict.id))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def inspections_by_id_prefix(session: Session, prefix: str, limit: int = 10) -> list[Inspection]:
    """Inspections whose request_id starts with `prefix` (a whole id is a prefix too)."""
    escaped = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return list(
        session.scalars(
            sa.select(Inspection)
            .where(Inspection.request_id.like(f"{escaped}%", escape="\\"))
            .order_by(Inspection.captured_at.desc(), Inspection.id.desc())
            .limit(limit)
        )
    )


def inspections_of_part(session: Session, part_id: str, limit: int = 10) -> list[Inspection]:
    """The inspections of one part, newest capture first."""
    return list(
        session.scalars(
            sa.select(Inspection)
            .where(Inspection.part_id == part_id)
            .order_by(Inspection.captured_at.desc(), Inspection.id.desc())
            .limit(limit)
        )
    )
