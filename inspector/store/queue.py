"""The review queue: tabs, per-user reviewed marks, pages, neighbours, tab counts, calendar.

Every listing is "an inspection with its latest verdict", ordered and paged by
store.filters' key (capture time, inspection id). The latest verdict and review are the
inspection's own `verdict_id` / `verdict` / `review_id` (kept by store.tallies), so a tab is
one index range.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.store.filters import (
    Cursor,
    VerdictFilter,
    newer,
    newest_first,
    older,
    reviewed_by,
)
from inspector.store.models import Inspection, Review, ReviewMark, Verdict
from inspector.store.tallies import day_of, verdict_totals

TABS = ("review", "fail", "audit", "all")


def audit_condition(percent: float) -> sa.ColumnElement[bool]:
    """PASS verdicts in the audit sample: every k-th inspection, k = 100 / percent.

    A systematic sample by inspection id is stable (an item stays in or out of the tab),
    spread evenly over stations and time, and decidable from the verdicts index alone.
    """
    if percent <= 0:
        return sa.false()
    every = max(1, round(100 / percent))
    if every == 1:
        return Inspection.verdict == "PASS"
    return sa.and_(Inspection.verdict == "PASS", Inspection.id % every == 0)


@dataclass(frozen=True, slots=True)
class QueueFilter(VerdictFilter):
    """What the queue shows: a tab and the reviewed state on top of the verdict filter."""

    tab: str = "review"
    reviewed: bool | None = False  # False: only unreviewed by this user, None: both
    audit_percent: float = 5.0

    def __post_init__(self) -> None:
        if self.tab not in TABS:
            raise ValueError(f"tab must be one of {', '.join(TABS)}")

    def scope(self) -> VerdictFilter:
        """The filter's conditions other than the tab and the reviewed state."""
        return self


def _tab(tab: str, audit_percent: float) -> list[sa.ColumnElement[bool]]:
    if tab == "review":
        return [Inspection.verdict == "REVIEW"]
    if tab == "fail":
        return [Inspection.verdict == "FAIL"]
    if tab == "audit":
        return [audit_condition(audit_percent)]
    return []  # every inspection with a verdict: the join to it (_scoped) says which


def conditions(flt: VerdictFilter, user_id: int | None) -> list[sa.ColumnElement[bool]]:
    """The filter as SQL conditions; a queue filter adds its tab and this user's marks."""
    if not isinstance(flt, QueueFilter):
        return flt.where()
    conds = flt.scope().where() + _tab(flt.tab, flt.audit_percent)
    if flt.reviewed is not None:
        if user_id is None:
            raise ValueError("the reviewed state is per user: name the user")
        conds.append(reviewed_by(user_id) if flt.reviewed else ~reviewed_by(user_id))
    return conds


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One row of the queue: an inspection, its latest verdict, and who reviewed it."""

    inspection_id: int
    request_id: str
    site: str
    line: str
    station: str
    part_id: str
    captured_at: datetime
    verdict: str
    confidence: float
    adapter: str
    latest_review: str | None
    reviewed_by_me: bool

    @property
    def cursor(self) -> Cursor:
        """The key of this row in the queue order."""
        return Cursor(self.captured_at, self.inspection_id)


def with_latest_verdict(stmt: Any) -> Any:
    """`stmt` over inspections joined to their latest verdicts."""
    return stmt.select_from(Inspection).join(Verdict, Verdict.id == Inspection.verdict_id)


def _items_select(user_id: int) -> Any:
    latest_review = (
        sa.select(Review.final_verdict).where(Review.id == Inspection.review_id).scalar_subquery()
    )
    stmt: Any = sa.select(
        Inspection.id,
        Inspection.request_id,
        Inspection.site,
        Inspection.line,
        Inspection.station,
        Inspection.part_id,
        Inspection.captured_at,
        Verdict.verdict,
        Verdict.confidence,
        Verdict.adapter,
        latest_review,
        reviewed_by(user_id),
    )
    return with_latest_verdict(stmt)


def _item(row: sa.Row[Any]) -> QueueItem:
    iid, rid, site, line, station, part, at, verdict, conf, adapter, review, mine = tuple(row)
    return QueueItem(
        iid, rid, site, line, station, part, at, verdict, conf, adapter, review, bool(mine)
    )


def queue_page(
    session: Session,
    flt: QueueFilter,
    user_id: int,
    after: Cursor | None = None,
    limit: int = 50,
) -> tuple[list[QueueItem], Cursor | None]:
    """One page of the queue after `after`, and the cursor of the next page (None: last)."""
    conds = conditions(flt, user_id)
    if after is not None:
        conds.append(older(after, Inspection.id))
    stmt = (
        _items_select(user_id).where(*conds).order_by(*newest_first(Inspection.id)).limit(limit + 1)
    )
    items = [_item(r) for r in session.execute(stmt)]
    more = len(items) > limit
    items = items[:limit]
    return items, (items[-1].cursor if more and items else None)


def neighbours(
    session: Session, flt: QueueFilter, user_id: int, cursor: Cursor
) -> tuple[str | None, str | None]:
    """The request_ids before and after `cursor` in the queue order (previous, next)."""
    base = _scoped(sa.select(Inspection.request_id), flt).where(*conditions(flt, user_id))
    nxt = session.scalar(
        base.where(older(cursor, Inspection.id)).order_by(*newest_first(Inspection.id)).limit(1)
    )
    prev = session.scalar(
        base.where(newer(cursor, Inspection.id))
        .order_by(Inspection.captured_at.asc(), Inspection.id.asc())
        .limit(1)
    )
    return prev, nxt


def _scoped(stmt: Any, flt: QueueFilter) -> Any:
    """`stmt` over the filter's inspections, joined to their latest verdicts where needed."""
    if flt.tab == "all":
        return with_latest_verdict(stmt)  # the join is what says "has a verdict"
    return _over(stmt, flt.scope())


def _over(stmt: Any, scope: VerdictFilter) -> Any:
    """`stmt` over inspections, joined to their latest verdict where the scope names it."""
    return with_latest_verdict(stmt) if scope.needs_verdicts else stmt.select_from(Inspection)


def unreviewed_counts(session: Session, flt: QueueFilter, user_id: int) -> dict[str, int]:
    """Per tab, how many inspections in the filter's scope this user has not reviewed."""
    scope = flt.scope()
    review_fail = ("REVIEW", "FAIL")
    kept = verdict_totals(session, scope, review_fail)
    if kept is not None:
        # The kept totals less what this user marked: the cost grows with the user's marks,
        # not with the inspections.
        stmt = (
            _over(sa.select(Inspection.verdict, sa.func.count()), scope)
            .join(ReviewMark, ReviewMark.inspection_id == Inspection.id)
            .where(*scope.where(), ReviewMark.user_id == user_id)
            .where(Inspection.verdict.in_(review_fail))
            .group_by(Inspection.verdict)
        )
        marked = {verdict: int(n) for verdict, n in session.execute(stmt)}
        review, fail = (kept[v] - marked.get(v, 0) for v in review_fail)
    else:
        counts = (sa.func.count().filter(Inspection.verdict == v) for v in review_fail)
        stmt = _over(sa.select(*counts), scope).where(
            *scope.where(), ~reviewed_by(user_id), Inspection.verdict.in_(review_fail)
        )
        review, fail = session.execute(stmt).one()
    # The audit sample depends on a review setting, so it is not kept: PASS verdicts are
    # counted along their own index range.
    audit_stmt = _over(sa.select(sa.func.count()), scope).where(
        *scope.where(), ~reviewed_by(user_id), audit_condition(flt.audit_percent)
    )
    audited = session.scalar(audit_stmt) or 0
    return {"review": int(review), "fail": int(fail), "audit": int(audited)}


def unreviewed_days(
    session: Session, flt: QueueFilter, user_id: int, start: datetime, end: datetime
) -> list[tuple[str, int]]:
    """Days (YYYY-MM-DD, UTC) between start and end with unreviewed items, and how many."""
    scoped = replace(flt, since=start, until=end, reviewed=False)
    day = day_of(session, Inspection.captured_at)
    stmt = (
        _scoped(sa.select(day, sa.func.count()), scoped)
        .where(*conditions(scoped, user_id))
        .group_by(day)
        .order_by(day)
    )
    return [(str(d), int(n)) for d, n in session.execute(stmt)]
