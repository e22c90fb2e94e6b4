"""The one export schema: each selected inspection with its latest verdict, latest review and
media hashes, streamed in chunks. `inspector verdicts export` and the review app's
`/api/v1/export` both write it (JSON Lines as records, CSV through `csv_record`).

Columns: the part (protocol.PART_FIELDS), when it was captured, the operator and note, the
verdict's own fields (protocol.VERDICT_FIELDS), the latest review, how many reviews, media.
JSON Lines adds `shadow_verdicts`: the shadow adapters' verdicts on the request, a list apart
from the verdict's columns (never published, never the inspection's verdict); CSV leaves them
out rather than put a second verdict in a flat row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.protocol import PART_FIELDS, VERDICT_FIELDS
from inspector.store.filters import Cursor, VerdictFilter, newest_first, older
from inspector.store.models import Inspection, InspectionMedia, Review, Verdict
from inspector.store.queue import conditions, with_latest_verdict
from inspector.store.shadow import shadow_verdicts

_REVIEW_COLUMNS = {
    "review_decision": Review.decision,
    "review_verdict": Review.final_verdict,
    "review_defect_type": Review.defect_type,
    "review_comment": Review.comment,
    "reviewer": Review.reviewer,
    "reviewed_at": Review.created_at,
}
_SELECTED: dict[str, Any] = {
    **{name: getattr(Inspection, name) for name in PART_FIELDS},
    "captured_at": Inspection.captured_at,
    "operator": Inspection.operator,
    "note": Inspection.note,
    **{name: getattr(Verdict, name) for name in VERDICT_FIELDS},
    **_REVIEW_COLUMNS,
}
# Columns added later go last, so a CSV read by position keeps its earlier columns.
_LATER: dict[str, Any] = {"rationale_reason": Verdict.rationale_reason}
EXPORT_COLUMNS: tuple[str, ...] = (
    *_SELECTED,
    "reviews",
    "media",
    "shadow_verdicts",
    *_LATER,
)
LATER_COLUMNS: tuple[str, ...] = tuple(_LATER)
_STORED: dict[str, Any] = {**_SELECTED, **_LATER}  # every column read from a row
# CSV has no lists: defects as their types joined by ";", media as space-separated hashes.
# A CSV that adds columns of its own puts them between these two.
CSV_BASE_COLUMNS: tuple[str, ...] = (*_SELECTED, "reviews", "media_sha256")
CSV_COLUMNS: tuple[str, ...] = (*CSV_BASE_COLUMNS, *LATER_COLUMNS)


def iter_export(
    session: Session,
    flt: VerdictFilter,
    user_id: int | None = None,
    limit: int | None = None,
    chunk: int = 1000,
) -> Iterator[dict[str, Any]]:
    """The filter's inspections as export records, newest capture first, by chunk.

    A queue filter (store.queue.QueueFilter) selects by its tab and the user's reviewed marks
    as the queue does; a plain verdict filter selects every inspection with a verdict.
    """
    review_count = (
        sa.select(sa.func.count())
        .where(Review.inspection_id == Inspection.id)
        .correlate(Inspection)
        .scalar_subquery()
    )
    base = (
        with_latest_verdict(sa.select(Inspection.id, review_count, *_STORED.values()))
        .outerjoin(Review, Review.id == Inspection.review_id)
        .where(*conditions(flt, user_id))
        .order_by(*newest_first(Inspection.id))
    )
    conn = session.connection()  # Core rows: no ORM loading for thousands of rows
    after: Cursor | None = None
    left = limit
    while left is None or left > 0:
        size = chunk if left is None else min(chunk, left)
        stmt = base.where(older(after, Inspection.id)) if after is not None else base
        rows = conn.execute(stmt.limit(size)).all()
        if not rows:
            return
        media = _media_of(conn, [r[0] for r in rows])
        shadows = _shadows_of(session, [r.request_id for r in rows])
        for iid, count, *values in rows:
            record = _record(values, int(count), media.get(iid, []))
            record["shadow_verdicts"] = shadows.get(record["request_id"], [])
            yield {name: record[name] for name in EXPORT_COLUMNS}
        last = rows[-1]
        after = Cursor(last.captured_at, last[0])
        if left is not None:
            left -= len(rows)


def _media_of(conn: sa.Connection, ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    out: dict[int, list[tuple[str, str]]] = {}
    rows = conn.execute(
        sa.select(InspectionMedia.inspection_id, InspectionMedia.role, InspectionMedia.sha256)
        .where(InspectionMedia.inspection_id.in_(ids))
        .order_by(InspectionMedia.inspection_id, InspectionMedia.position)
    ).all()  # one fetch for the chunk, not a fetch per row
    for iid, role, sha in rows:
        out.setdefault(iid, []).append((role, sha))
    return out


def _shadows_of(session: Session, request_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for shadow in shadow_verdicts(session, request_ids):  # one fetch for the chunk
        out.setdefault(shadow.request_id, []).append(shadow.export_record())
    return out


def _record(values: list[Any], reviews: int, media: list[tuple[str, str]]) -> dict[str, Any]:
    record: dict[str, Any] = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in zip(_STORED, values, strict=True)
    }
    record["reviews"] = reviews
    record["media"] = [{"role": role, "sha256": sha} for role, sha in media]
    return record


def csv_record(record: dict[str, Any]) -> dict[str, Any]:
    """An export record flattened for CSV (CSV_COLUMNS): defect types and media hashes."""
    flat = {name: record[name] for name in CSV_COLUMNS if name in record}
    flat["defects"] = ";".join(str(d.get("type")) for d in record["defects"])
    flat["media_sha256"] = " ".join(m["sha256"] for m in record["media"])
    return flat
