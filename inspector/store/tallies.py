"""What the review app reads at 100 000 inspections without scanning them, kept on every write.

- `inspections.verdict_id` and the latest verdict's `verdict`, `confidence`, `p_pass` and
  `adapter`: the queue filters, orders, pages and counts one table along its indexes (verdict,
  capture time, id; verdict, confidence, …; verdict, adapter, confidence, …) instead of
  joining every verdict and asking whether a newer one exists;
- `inspections.review_id`: the latest review (the one that counts; none after a withdrawal);
- `verdict_days` (per UTC capture day, site, line, adapter and verdict), `verdict_hours` (per
  day, site, line, adapter and hour of day) and `reviewed_days` (per day, site, adapter, model
  and reviewer verdict and P(PASS) bucket): the numbers page sums a few thousand rows instead
  of joining every verdict and review.

`record_verdicts`, `record_review` and `withdraw_review` call `verdicts_recorded` /
`review_recorded` / `review_withdrawn` in their own transaction, and `rebuild` recomputes
everything from the rows (after a bulk load). Two writes for one inspection at once on
PostgreSQL are serialised by a row lock on the inspection (SQLite has a single writer), so a
count is never moved twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inspector.store.filters import VerdictFilter
from inspector.store.models import (
    Inspection,
    Review,
    ReviewedDay,
    Verdict,
    VerdictDay,
    VerdictHour,
    utc,
)

BUCKETS = 1000  # P(PASS) resolution of the threshold what-if


def day_and_hour(at: datetime) -> tuple[str, int]:
    """The UTC day (YYYY-MM-DD) and hour of a capture time, as the tallies key it."""
    at = utc(at)
    return at.strftime("%Y-%m-%d"), at.hour


def day_of(session: Session, column: Any) -> sa.ColumnElement[str]:
    """SQL for the UTC day (YYYY-MM-DD) of a stored time."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite keeps UTC times as "YYYY-MM-DD HH:MM:SS.ffffff" text.
        return sa.func.substr(column, 1, 10)
    return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")


def hour_of(session: Session, column: Any) -> sa.ColumnElement[int]:
    """SQL for the UTC hour of day of a stored time."""
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast(sa.func.substr(column, 12, 2), sa.Integer)
    return sa.cast(sa.func.extract("hour", sa.func.timezone("UTC", column)), sa.Integer)


def bucket_of(session: Session, p_pass: Any) -> sa.ColumnElement[int]:
    """SQL for the P(PASS) bucket, as `bucket` computes it."""
    scaled = p_pass * BUCKETS
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast(scaled, sa.Integer)  # truncates, and P(PASS) is never negative
    return sa.cast(sa.func.floor(scaled), sa.Integer)


def bucket(p_pass: float) -> int:
    """The P(PASS) bucket (of BUCKETS) a verdict is tallied in."""
    return int(p_pass * BUCKETS)


def _whole_day(at: datetime | None) -> bool:
    return at is None or utc(at).timetz().replace(tzinfo=None) == time.min


def verdict_totals(
    session: Session, scope: VerdictFilter, verdicts: Sequence[str]
) -> dict[str, int] | None:
    """Latest verdicts per decision in the scope, from `verdict_days`; None when the scope
    names what the tally is not kept by (station, confidence, part id, note disagreement, a time
    within a day)."""
    if (
        scope.station
        or scope.part_id
        or scope.min_confidence is not None
        or scope.max_confidence is not None
        or scope.note_disagrees
        or not (_whole_day(scope.since) and _whole_day(scope.until))
    ):
        return None
    conds: list[sa.ColumnElement[bool]] = [VerdictDay.verdict.in_(verdicts)]
    for column, value in (
        (VerdictDay.site, scope.site),
        (VerdictDay.line, scope.line),
        (VerdictDay.adapter, scope.adapter),
        (VerdictDay.verdict, scope.verdict),
    ):
        if value:
            conds.append(column == value)
    if scope.since:
        conds.append(VerdictDay.day >= day_and_hour(scope.since)[0])
    if scope.until:
        conds.append(VerdictDay.day < day_and_hour(scope.until)[0])
    stmt = (
        sa.select(VerdictDay.verdict, sa.func.sum(VerdictDay.n))
        .where(*conds)
        .group_by(VerdictDay.verdict)
    )
    found = {verdict: int(n) for verdict, n in session.execute(stmt)}
    return {verdict: found.get(verdict, 0) for verdict in verdicts}


@dataclass(frozen=True, slots=True)
class _Latest:
    """One inspection with the facts of its latest verdict and review, as the tallies key them."""

    id: int
    site: str
    line: str
    day: str
    hour: int
    verdict_id: int | None
    review_id: int | None


class _Facts(NamedTuple):
    """What the tallies and the inspection's copies take from a verdict."""

    verdict: str
    adapter: str
    p_pass: float
    confidence: float


@dataclass
class _Deltas:
    days: Counter[tuple[Any, ...]]
    hours: Counter[tuple[Any, ...]]
    reviewed: Counter[tuple[Any, ...]]

    @classmethod
    def empty(cls) -> _Deltas:
        return cls(Counter(), Counter(), Counter())

    def verdict(self, at: _Latest, verdict: str, adapter: str, sign: int) -> None:
        self.days[(at.day, at.site, at.line, adapter, verdict)] += sign
        self.hours[(at.day, at.site, at.line, adapter, at.hour)] += sign

    def review(self, at: _Latest, v: _Facts, final: str, sign: int) -> None:
        self.reviewed[(at.day, at.site, v.adapter, v.verdict, final, bucket(v.p_pass))] += sign

    def write(self, session: Session) -> None:
        _add(session, VerdictDay, ("day", "site", "line", "adapter", "verdict"), self.days)
        _add(session, VerdictHour, ("day", "site", "line", "adapter", "hour"), self.hours)
        keys = ("day", "site", "adapter", "verdict", "final_verdict", "bucket")
        _add(session, ReviewedDay, keys, self.reviewed)


def _locked(session: Session, ids: Sequence[int]) -> list[_Latest]:
    rows = session.execute(
        sa.select(
            Inspection.id,
            Inspection.site,
            Inspection.line,
            Inspection.captured_at,
            Inspection.verdict_id,
            Inspection.review_id,
        )
        .where(Inspection.id.in_(ids))
        .order_by(Inspection.id)
        .with_for_update()
    ).all()
    return [_Latest(i, s, ln, *day_and_hour(at), v, r) for i, s, ln, at, v, r in rows]


def _verdict_facts(session: Session, ids: set[int]) -> dict[int, _Facts]:
    rows = session.execute(
        sa.select(
            Verdict.id, Verdict.verdict, Verdict.adapter, Verdict.p_pass, Verdict.confidence
        ).where(Verdict.id.in_(ids))
    )
    return {vid: _Facts(v, adapter, p, conf) for vid, v, adapter, p, conf in rows}


def _finals(session: Session, ids: set[int]) -> dict[int, str]:
    rows = session.execute(sa.select(Review.id, Review.final_verdict).where(Review.id.in_(ids)))
    return {rid: final for rid, final in rows}


def verdicts_recorded(session: Session, new: Sequence[tuple[int, int]]) -> None:
    """After inserting verdicts (inspection id, verdict id): make the newest of each the latest."""
    newest: dict[int, int] = {}
    for iid, vid in new:
        newest[iid] = max(vid, newest.get(iid, 0))
    if not newest:
        return
    rows = [
        r
        for r in _locked(session, list(newest))
        if r.verdict_id is None or r.verdict_id < newest[r.id]
    ]
    facts = _verdict_facts(
        session, {newest[r.id] for r in rows} | {r.verdict_id for r in rows if r.verdict_id}
    )
    finals = _finals(session, {r.review_id for r in rows if r.review_id is not None})
    deltas = _Deltas.empty()
    for r in rows:
        new_v = facts[newest[r.id]]
        if r.verdict_id is not None:
            old_v = facts[r.verdict_id]
            deltas.verdict(r, old_v.verdict, old_v.adapter, -1)
            if r.review_id is not None:
                deltas.review(r, old_v, finals[r.review_id], -1)
        deltas.verdict(r, new_v.verdict, new_v.adapter, +1)
        if r.review_id is not None:
            deltas.review(r, new_v, finals[r.review_id], +1)
    moved = [
        {"id": r.id, "verdict_id": newest[r.id], **facts[newest[r.id]]._asdict()} for r in rows
    ]
    if moved:
        session.execute(sa.update(Inspection), moved)
    deltas.write(session)


def review_recorded(session: Session, inspection_id: int, review_id: int) -> None:
    """After inserting a review: it is the inspection's latest unless a newer one exists."""
    (r,) = _locked(session, [inspection_id])
    if r.review_id is not None and r.review_id >= review_id:
        return
    finals = _finals(session, {review_id} | ({r.review_id} if r.review_id else set()))
    if r.verdict_id is not None:
        v = _verdict_facts(session, {r.verdict_id})[r.verdict_id]
        deltas = _Deltas.empty()
        if r.review_id is not None:
            deltas.review(r, v, finals[r.review_id], -1)
        deltas.review(r, v, finals[review_id], +1)
        deltas.write(session)
    session.execute(sa.update(Inspection), [{"id": inspection_id, "review_id": review_id}])


def review_withdrawn(session: Session, inspection_id: int) -> None:
    """After appending a withdrawal: the inspection has no answer that counts."""
    (r,) = _locked(session, [inspection_id])
    if r.review_id is None:
        return
    if r.verdict_id is not None:
        v = _verdict_facts(session, {r.verdict_id})[r.verdict_id]
        deltas = _Deltas.empty()
        deltas.review(r, v, _finals(session, {r.review_id})[r.review_id], -1)
        deltas.write(session)
    session.execute(sa.update(Inspection), [{"id": inspection_id, "review_id": None}])


def _add(session: Session, model: type[Any], keys: tuple[str, ...], deltas: Counter[Any]) -> None:
    rows = [{**dict(zip(keys, key, strict=True)), "n": n} for key, n in deltas.items() if n]
    if not rows:
        return
    insert = (sqlite if session.get_bind().dialect.name == "sqlite" else postgresql).insert(model)
    stmt = insert.on_conflict_do_update(
        index_elements=list(keys), set_={"n": model.__table__.c.n + insert.excluded.n}
    )
    session.execute(stmt, rows)


def rebuild(session: Session) -> None:
    """Recompute the latest pointers and every tally from the stored rows."""
    # UPDATE ... FROM grouped rows: one pass over each table. A correlated subquery per
    # inspection turns quadratic when the planner has no statistics yet (after a bulk load).
    newest = (
        sa.select(Verdict.inspection_id, sa.func.max(Verdict.id).label("vid"))
        .group_by(Verdict.inspection_id)
        .subquery()
    )
    copied = (Verdict.verdict, Verdict.confidence, Verdict.p_pass, Verdict.adapter)
    latest = (
        sa.select(newest.c.inspection_id, newest.c.vid, *copied)
        .join(Verdict, Verdict.id == newest.c.vid)
        .subquery()
    )
    newest_review = (
        sa.select(Review.inspection_id, sa.func.max(Review.id).label("rid"))
        .group_by(Review.inspection_id)
        .subquery()
    )
    # A withdrawal as the newest entry leaves no answer that counts.
    reviewed = (
        sa.select(
            newest_review.c.inspection_id,
            sa.case((Review.decision == "withdraw", None), else_=Review.id).label("rid"),
        )
        .join(Review, Review.id == newest_review.c.rid)
        .subquery()
    )
    for stmt in (
        sa.update(Inspection)
        .where(Inspection.id == latest.c.inspection_id)
        .values(verdict_id=latest.c.vid, **{c.key: latest.c[c.key] for c in copied}),
        sa.update(Inspection)
        .where(Inspection.id == reviewed.c.inspection_id)
        .values(review_id=reviewed.c.rid),
    ):
        session.execute(stmt.execution_options(synchronize_session=False))
    day = day_of(session, Inspection.captured_at)
    where = (Inspection.site, Inspection.line, Verdict.adapter)
    kinds: tuple[tuple[type[Any], tuple[Any, ...]], ...] = (
        (VerdictDay, (day, *where, Verdict.verdict)),
        (VerdictHour, (day, *where, hour_of(session, Inspection.captured_at))),
        (ReviewedDay, (day, Inspection.site, Verdict.adapter, Verdict.verdict,
                       Review.final_verdict, bucket_of(session, Verdict.p_pass))),
    )  # fmt: skip
    for model, cols in kinds:
        session.execute(sa.delete(model))
        grouped = (
            sa.select(*cols, sa.func.count())
            .select_from(Inspection)
            .join(Verdict, Verdict.id == Inspection.verdict_id)
        )
        if model is ReviewedDay:
            grouped = grouped.join(Review, Review.id == Inspection.review_id)
        names = [c.name for c in model.__table__.primary_key.columns] + ["n"]
        session.execute(sa.insert(model).from_select(names, grouped.group_by(*cols)))
