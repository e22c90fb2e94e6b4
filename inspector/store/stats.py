"""Aggregates for the review app's numbers page: sums over store.tallies, the arithmetic elsewhere.

Each inspection counts once, with its latest verdict and (where reviewed) its latest review;
the tallies are kept per UTC capture day, so a page costs the same at 100 000 inspections.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.store.models import ReviewedDay, VerdictDay, VerdictHour, utc

Condition = sa.ColumnElement[bool]


def _floor(at: datetime) -> datetime:
    return datetime.combine(utc(at).date(), time.min, tzinfo=UTC)


def _ceil(at: datetime) -> datetime:
    day = _floor(at)
    return day if day == utc(at) else day + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class StatsFilter:
    """Which inspections the numbers cover; dates bound the capture time in whole UTC days.

    The numbers are kept per day, so `since` counts from the start of its day and `until`
    (exclusive) to the end of its day unless it is a midnight.
    """

    site: str | None = None
    adapter: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def on(
        self, tally: type[VerdictDay | VerdictHour | ReviewedDay]
    ) -> list[sa.ColumnElement[bool]]:
        """The filter as conditions on a tally table."""
        conds: list[sa.ColumnElement[bool]] = []
        if self.site:
            conds.append(tally.site == self.site)
        if self.adapter:
            conds.append(tally.adapter == self.adapter)
        if self.since:
            conds.append(tally.day >= _floor(self.since).strftime("%Y-%m-%d"))
        if self.until:
            conds.append(tally.day < _ceil(self.until).strftime("%Y-%m-%d"))
        return conds


def _sums(session: Session, flt: StatsFilter, *cols: Any) -> list[Any]:
    """The tally's counts summed by `cols` (all of one tally table), zeros left out."""
    tally = cols[0].class_
    n = sa.func.sum(tally.n)
    stmt = sa.select(*cols, n).where(*flt.on(tally)).group_by(*cols).having(n > 0)
    return list(session.execute(stmt))


def verdict_counts(session: Session, flt: StatsFilter) -> list[tuple[str, str, str, int]]:
    """(site, adapter, verdict, count) of latest verdicts over the filter."""
    rows = _sums(session, flt, VerdictDay.site, VerdictDay.adapter, VerdictDay.verdict)
    return [(s, a, v, int(c)) for s, a, v, c in rows]


def hourly_counts(session: Session, flt: StatsFilter) -> list[tuple[str, str, int, int]]:
    """(site, line, hour of day UTC, count) of latest verdicts over the filter."""
    rows = _sums(session, flt, VerdictHour.site, VerdictHour.line, VerdictHour.hour)
    return [(s, ln, int(h), int(c)) for s, ln, h, c in rows]


def reviewed_counts(session: Session, flt: StatsFilter) -> list[tuple[str, str, str, str, int]]:
    """(site, adapter, model verdict, reviewer verdict, count) over reviewed inspections."""
    cols = (ReviewedDay.site, ReviewedDay.adapter, ReviewedDay.verdict, ReviewedDay.final_verdict)
    return [(s, a, v, f, int(c)) for s, a, v, f, c in _sums(session, flt, *cols)]


def reviewed_histogram(session: Session, flt: StatsFilter) -> list[tuple[int, str, int]]:
    """(P(PASS) bucket of BUCKETS, reviewer verdict, count) over reviewed inspections."""
    rows = _sums(session, flt, ReviewedDay.bucket, ReviewedDay.final_verdict)
    return [(int(b), f, int(c)) for b, f, c in rows]
