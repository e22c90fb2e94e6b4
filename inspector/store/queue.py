"""The review queue: tabs, per-user reviewed marks, pages, neighbours, tab counts, calendar.

Every listing is "an inspection with its latest verdict". The REVIEW tab puts the most
useful answer first: the most uncertain verdict (lowest confidence, P(PASS) nearest ½),
then the newest; every other tab is ordered newest capture first (the shadow tab holds only
inspections a site's shadow adapter decided otherwise, store.shadow). Pages are keyed by the
order's own columns (store.filters.Cursor; its rank is the confidence), so a page never
repeats or skips a row whatever arrives meanwhile. The latest verdict and review are the
inspection's own `verdict_id` / `review_id`, and the latest verdict's columns that the queue
shows, filters and orders by are copied onto the inspection (kept by store.tallies): every
page, neighbour and count reads the inspections table alone, along its indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import InvalidInput
from inspector.quality import Decision, leaning
from inspector.store.filters import Cursor, VerdictFilter, reviewed_by
from inspector.store.models import Inspection, Review, ReviewMark, Verdict
from inspector.store.shadow import disagrees_with_shadow, unreviewed_disagreements
from inspector.store.tallies import day_of, verdict_totals

TABS = ("review", "fail", "audit", "all", "shadow")


# The audit draw: a multiplicative hash of the inspection id onto 0..AUDIT_SLOTS-1. The
# multiplier is odd and prime to 5, so the hash is a permutation of each block of
# AUDIT_SLOTS ids: a stable draw (an item stays in or out of the sample), independent of
# when or where a part was captured and of anything a station sends, and exactly `percent`
# of every such block, so stations taking turns are sampled alike.
AUDIT_SLOTS = 10_000
_AUDIT_MULTIPLIER = 2_654_435_761  # Knuth's; id * it stays within 64 bits for 31-bit ids


def audit_slot(inspection_id: int) -> int:
    """Where an inspection falls in the audit draw (as the SQL of audit_condition)."""
    return inspection_id * _AUDIT_MULTIPLIER % AUDIT_SLOTS


def audit_condition(percent: float) -> sa.ColumnElement[bool]:
    """Confident PASS verdicts drawn into the audit sample at `percent` (of 100).

    PASS verdicts are the confident ones (REVIEW is below the site threshold); reviewing a
    random share of them measures escapes without the bias of reviewing only doubtful parts.
    """
    if percent <= 0:
        return sa.false()
    is_pass = Inspection.verdict == Decision.PASS.value
    if percent >= 100:
        return is_pass
    cut = round(AUDIT_SLOTS * percent / 100)
    # In 64 bits on PostgreSQL: the multiplier is past a 32-bit integer, and a bound integer
    # is cast to the column's 32-bit type there.
    big = sa.cast(Inspection.id, sa.BigInteger) * sa.literal(_AUDIT_MULTIPLIER, sa.BigInteger)
    return sa.and_(is_pass, big % AUDIT_SLOTS < cut)


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
    if tab == "shadow":
        return [Inspection.verdict.is_not(None), disagrees_with_shadow()]
    return [Inspection.verdict.is_not(None)]  # every inspection with a verdict


def conditions(flt: VerdictFilter, user_id: int | None) -> list[sa.ColumnElement[bool]]:
    """The filter as SQL conditions; a queue filter adds its tab and this user's marks."""
    if not isinstance(flt, QueueFilter):
        return [*flt.on_latest(), Inspection.verdict.is_not(None)]
    conds = flt.scope().on_latest() + _tab(flt.tab, flt.audit_percent)
    if flt.reviewed is not None:
        if user_id is None:
            raise ValueError("the reviewed state is per user: name the user")
        conds.append(marked_by(user_id) if flt.reviewed else ~reviewed_by(user_id))
    return conds


def marked_by(user_id: int) -> sa.ColumnElement[bool]:
    """Inspections this user marked reviewed, as a set of ids the database can start from.

    The same rows as reviewed_by; a user's marks are few next to the inspections, so listing
    them first beats asking each inspection whether it is marked (which scans them all when
    the user has marked none).
    """
    mine = sa.select(ReviewMark.inspection_id).where(ReviewMark.user_id == user_id)
    return Inspection.id.in_(mine)


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
    p_pass: float
    adapter: str
    latest_review: str | None  # the answer that counts (none after a withdrawal)
    reviewed_by_me: bool
    note_disagrees: bool = False  # the operator's note contradicts the latest verdict

    @property
    def leaning(self) -> Decision:
        """The way P(PASS) leans (what a REVIEW verdict would have been)."""
        return leaning(self.p_pass)

    def key(self, flt: QueueFilter) -> Cursor:
        """The key of this row in the queue order of `flt`."""
        return Cursor(self.captured_at, self.inspection_id, rank_of(flt, self.confidence))


def by_uncertainty(flt: QueueFilter) -> bool:
    """Whether the listing leads with the most uncertain verdict (the REVIEW tab)."""
    return flt.tab == "review"


def rank_of(flt: QueueFilter, confidence: float | None) -> float | None:
    """The cursor's rank for a row of this confidence in `flt`'s order."""
    return confidence if by_uncertainty(flt) else None


def _order(flt: QueueFilter) -> list[tuple[Any, bool]]:
    """The order's columns, each with whether it ascends; the last is unique."""
    newest = [(Inspection.captured_at, False), (Inspection.id, False)]
    return [(Inspection.confidence, True), *newest] if by_uncertainty(flt) else newest


def _values(flt: QueueFilter, cursor: Cursor) -> list[Any]:
    if by_uncertainty(flt):
        if cursor.rank is None:
            raise InvalidInput("this cursor is from another tab; start from the first page")
        return [cursor.rank, cursor.captured_at, cursor.id]
    return [cursor.captured_at, cursor.id]


def _beyond(flt: QueueFilter, cursor: Cursor, forward: bool) -> sa.ColumnElement[bool]:
    """Rows after `cursor` in the order (forward), or before it."""
    terms = []
    keys = _order(flt)
    values = _values(flt, cursor)
    for i, ((column, ascending), value) in enumerate(zip(keys, values, strict=True)):
        later = column > value if ascending == forward else column < value
        same = [c == v for (c, _), v in zip(keys[:i], values[:i], strict=True)]
        terms.append(sa.and_(*same, later))
    # The first key's bound on its own as well: the same rows, and an index range where the
    # OR alone would have the database scan from the start of the order.
    (first, ascending), value = keys[0], values[0]
    bound = first >= value if ascending == forward else first <= value
    return sa.and_(bound, sa.or_(*terms))


def _sorted(flt: QueueFilter, forward: bool = True) -> list[Any]:
    return [c.asc() if asc == forward else c.desc() for c, asc in _order(flt)]


def with_latest_verdict(stmt: Any) -> Any:
    """`stmt` over inspections joined to their latest verdicts (for columns not copied)."""
    return stmt.select_from(Inspection).join(Verdict, Verdict.id == Inspection.verdict_id)


def _items_select(user_id: int) -> Any:
    latest_review = (
        sa.select(Review.final_verdict).where(Review.id == Inspection.review_id).scalar_subquery()
    )
    # One primary-key lookup per listed row (a page), not a join over the queue's scope.
    disagrees = (
        sa.select(Verdict.note_disagrees)
        .where(Verdict.id == Inspection.verdict_id)
        .scalar_subquery()
    )
    stmt: Any = sa.select(
        Inspection.id,
        Inspection.request_id,
        Inspection.site,
        Inspection.line,
        Inspection.station,
        Inspection.part_id,
        Inspection.captured_at,
        Inspection.verdict,
        Inspection.confidence,
        Inspection.p_pass,
        Inspection.adapter,
        latest_review,
        reviewed_by(user_id),
        disagrees,
    )
    return stmt.select_from(Inspection)


def _item(row: sa.Row[Any]) -> QueueItem:
    iid, rid, site, line, station, part, at, verdict, conf, p, adapter, review, mine, note = tuple(
        row
    )
    return QueueItem(
        iid,
        rid,
        site,
        line,
        station,
        part,
        at,
        verdict,
        conf,
        p,
        adapter,
        review,
        bool(mine),
        bool(note),
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
        conds.append(_beyond(flt, after, forward=True))
    stmt = _items_select(user_id).where(*conds).order_by(*_sorted(flt)).limit(limit + 1)
    items = [_item(r) for r in session.execute(stmt)]
    more = len(items) > limit
    items = items[:limit]
    return items, (items[-1].key(flt) if more and items else None)


def neighbours(
    session: Session, flt: QueueFilter, user_id: int, cursor: Cursor
) -> tuple[str | None, str | None]:
    """The request_ids before and after `cursor` in the queue order (previous, next)."""
    base = _scoped(sa.select(Inspection.request_id)).where(*conditions(flt, user_id))
    nxt = session.scalar(
        base.where(_beyond(flt, cursor, forward=True)).order_by(*_sorted(flt)).limit(1)
    )
    prev = session.scalar(
        base.where(_beyond(flt, cursor, forward=False))
        .order_by(*_sorted(flt, forward=False))
        .limit(1)
    )
    return prev, nxt


@dataclass(frozen=True, slots=True)
class Progress:
    """Where an inspection stands in a queue: n of N (n is 0 when it is not in it)."""

    n: int
    total: int


def progress(session: Session, flt: QueueFilter, user_id: int, cursor: Cursor) -> Progress:
    """How many rows of the queue come before `cursor` (plus one), and how many there are."""
    base = _scoped(sa.select(sa.func.count())).where(*conditions(flt, user_id))
    total = session.scalar(base) or 0
    before = session.scalar(base.where(_beyond(flt, cursor, forward=False))) or 0
    here = session.scalar(base.where(Inspection.id == cursor.id))
    return Progress(before + 1 if here else 0, int(total))


def _scoped(stmt: Any) -> Any:
    """`stmt` over inspections (the latest verdict's columns are the inspection's own)."""
    return stmt.select_from(Inspection)


def unreviewed_counts(session: Session, flt: QueueFilter, user_id: int) -> dict[str, int]:
    """Per tab, how many inspections in the filter's scope this user has not reviewed."""
    scope = flt.scope()
    review_fail = ("REVIEW", "FAIL")
    kept = verdict_totals(session, scope, review_fail)
    if kept is not None:
        # The kept totals less what this user marked: the cost grows with the user's marks,
        # not with the inspections.
        stmt = (
            _scoped(sa.select(Inspection.verdict, sa.func.count()))
            .join(ReviewMark, ReviewMark.inspection_id == Inspection.id)
            .where(*scope.on_latest(), ReviewMark.user_id == user_id)
            .where(Inspection.verdict.in_(review_fail))
            .group_by(Inspection.verdict)
        )
        marked = {verdict: int(n) for verdict, n in session.execute(stmt)}
        review, fail = (kept[v] - marked.get(v, 0) for v in review_fail)
    else:
        counts = (sa.func.count().filter(Inspection.verdict == v) for v in review_fail)
        stmt = _scoped(sa.select(*counts)).where(
            *scope.on_latest(), ~reviewed_by(user_id), Inspection.verdict.in_(review_fail)
        )
        review, fail = session.execute(stmt).one()
    # The audit sample depends on a review setting, so it is not kept: PASS verdicts are
    # counted along their own index range.
    audit_stmt = _scoped(sa.select(sa.func.count())).where(
        *scope.on_latest(), ~reviewed_by(user_id), audit_condition(flt.audit_percent)
    )
    audited = session.scalar(audit_stmt) or 0
    return {
        "review": int(review),
        "fail": int(fail),
        "audit": int(audited),
        "shadow": unreviewed_disagreements(session, scope, user_id),
    }


def unreviewed_days(
    session: Session, flt: QueueFilter, user_id: int, start: datetime, end: datetime
) -> list[tuple[str, int]]:
    """Days (YYYY-MM-DD, UTC) between start and end with unreviewed items, and how many."""
    scoped = replace(flt, since=start, until=end, reviewed=False)
    day = day_of(session, Inspection.captured_at)
    stmt = (
        _scoped(sa.select(day, sa.func.count()))
        .where(*conditions(scoped, user_id))
        .group_by(day)
        .order_by(day)
    )
    return [(str(d), int(n)) for d, n in session.execute(stmt)]
