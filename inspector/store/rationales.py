"""Verdict first: the rationale written into a verdict stored earlier, or marked not produced.

A worker commits and publishes a verdict as soon as the prefill gives P(PASS), with its
rationale pending; the decoded rationale (and the voice note's transcript) then updates
that row. Only the worker that decided a verdict writes its rationale, so a verdict stored
by another worker (a redelivery raced) keeps its own. A rationale still pending
`worker.rationale_timeout_s` after its verdict belongs to a worker that stopped in between:
any live worker marks it not produced (`expire_rationales`), and a rationale that arrives
after all still replaces that mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import Code
from inspector.protocol import DefectFinding, RationaleMessage, RationaleState
from inspector.store.database import Database
from inspector.store.models import Inspection, Verdict

# A rationale may replace these states: the verdict's own pending one, or the mark a live
# worker left when it arrived too late.
_OPEN = (RationaleState.PENDING.value, RationaleState.NOT_PRODUCED.value)


@dataclass(frozen=True, slots=True)
class RationaleUpdate:
    """What the decode gave for one verdict, and which stored verdict it belongs to."""

    request_id: UUID | str
    worker_id: str
    model: str
    adapter: str
    prompt_version: str
    state: RationaleState  # produced, skipped (a transcript only) or not_produced
    rationale: str = ""
    transcript: str | None = None
    defects: Sequence[DefectFinding] = field(default_factory=list)
    reason: Code | None = None  # why it was not produced
    note_disagrees: bool = False  # with the transcript's words added to the typed note's


def write_rationales(
    session: Session, updates: Sequence[RationaleUpdate], written_at: datetime
) -> list[RationaleMessage | None]:
    """Write each rationale into its verdict; None where that verdict is not this worker's."""
    out: list[RationaleMessage | None] = []
    for update in updates:
        row = session.scalar(
            sa.select(Verdict)
            .join(Inspection)
            .where(
                Inspection.request_id == str(update.request_id),
                Verdict.worker_id == update.worker_id,
                Verdict.model == update.model,
                Verdict.adapter == update.adapter,
                Verdict.prompt_version == update.prompt_version,
                Verdict.rationale_state.in_(_OPEN),
            )
        )
        if row is None:
            out.append(None)
            continue
        row.rationale_state = update.state.value
        row.rationale_reason = update.reason.value if update.reason is not None else None
        row.rationale = update.rationale
        row.transcript = update.transcript
        row.defects = [d.model_dump(exclude_none=True) for d in update.defects]
        # Only ever set: a flag the verdict was published with stays.
        row.note_disagrees = row.note_disagrees or update.note_disagrees
        out.append(_message(row, update.worker_id, written_at, update.reason))
    session.flush()
    return out


def expire_rationales(
    db: Database, decided_before: datetime, worker_id: str, now: datetime, limit: int = 500
) -> list[RationaleMessage]:
    """Mark rationales still pending from verdicts decided before `decided_before` not produced.

    Returns the messages to publish (reason rationale.worker_lost, from `worker_id`, the
    live worker that marks them). Rows another worker marked meanwhile are skipped.
    """
    out: list[RationaleMessage] = []
    with db.write() as session:
        rows = session.scalars(
            sa.select(Verdict)
            .where(
                Verdict.rationale_state == RationaleState.PENDING.value,
                Verdict.decided_at < decided_before,
            )
            .order_by(Verdict.decided_at)
            .limit(limit)
        ).all()
        for row in rows:
            marked = session.execute(
                sa.update(Verdict)
                .where(
                    Verdict.id == row.id, Verdict.rationale_state == RationaleState.PENDING.value
                )
                .values(
                    rationale_state=RationaleState.NOT_PRODUCED.value,
                    rationale_reason=Code.RATIONALE_WORKER_LOST.value,
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(marked, "rowcount", 0) == 1:
                row.rationale_state = RationaleState.NOT_PRODUCED.value
                row.rationale_reason = Code.RATIONALE_WORKER_LOST.value
                out.append(_message(row, worker_id, now, Code.RATIONALE_WORKER_LOST))
    return out


def _message(
    row: Verdict, worker_id: str, written_at: datetime, reason: Code | None
) -> RationaleMessage:
    insp = row.inspection
    return RationaleMessage(
        request_id=UUID(insp.request_id),
        site=insp.site,
        line=insp.line,
        station=insp.station,
        part_id=insp.part_id,
        rationale_state=RationaleState(row.rationale_state),
        rationale=row.rationale,
        transcript=row.transcript,
        defects=[DefectFinding.model_validate(d) for d in row.defects],
        note_disagrees=row.note_disagrees,
        reason=reason.value if reason is not None else None,
        worker_id=worker_id,
        written_at=written_at,
    )
