"""Aggregates for the review app's numbers page: a few GROUP BYs, the arithmetic elsewhere.

Each inspection counts once, with its latest verdict and (where reviewed) its latest review.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from inspector.store.models import Inspection, Review, Verdict
from inspector.store.reviews import utc

BUCKETS = 1000  # P(PASS) resolution of the threshold what-if


@dataclass(frozen=True, slots=True)
class StatsFilter:
    """Which inspections the numbers cover; dates bound the capture time."""

    site: str | None = None
    adapter: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _where(flt: StatsFilter) -> list[sa.ColumnElement[bool]]:
    newer = aliased(Verdict)
    conds: list[sa.ColumnElement[bool]] = [
        ~sa.exists().where(newer.inspection_id == Verdict.inspection_id, newer.id > Verdict.id)
    ]
    if flt.site:
        conds.append(Inspection.site == flt.site)
    if flt.adapter:
        conds.append(Verdict.adapter == flt.adapter)
    if flt.since:
        conds.append(Inspection.captured_at >= utc(flt.since))
    if flt.until:
        conds.append(Inspection.captured_at < utc(flt.until))
    return conds


def _latest_review() -> sa.ColumnElement[bool]:
    newer = aliased(Review)
    return ~sa.exists().where(newer.inspection_id == Review.inspection_id, newer.id > Review.id)


def _hour(session: Session) -> sa.ColumnElement[Any]:
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast(sa.func.substr(Inspection.captured_at, 12, 2), sa.Integer)
    return sa.cast(
        sa.func.extract("hour", sa.func.timezone("UTC", Inspection.captured_at)), sa.Integer
    )


def _bucket(session: Session) -> sa.ColumnElement[Any]:
    scaled = Verdict.p_pass * BUCKETS
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast(scaled, sa.Integer)  # truncates, and P(PASS) is never negative
    return sa.cast(sa.func.floor(scaled), sa.Integer)


def verdict_counts(session: Session, flt: StatsFilter) -> list[tuple[str, str, str, int, str, int]]:
    """(site, adapter, line, hour of day UTC, verdict, count) over the filter."""
    hour = _hour(session)
    stmt = (
        sa.select(
            Inspection.site,
            Verdict.adapter,
            Inspection.line,
            hour,
            Verdict.verdict,
            sa.func.count(),
        )
        .join(Verdict, Verdict.inspection_id == Inspection.id)
        .where(*_where(flt))
        .group_by(Inspection.site, Verdict.adapter, Inspection.line, hour, Verdict.verdict)
    )
    return [(s, a, ln, int(h), v, int(n)) for s, a, ln, h, v, n in session.execute(stmt)]


def reviewed_counts(session: Session, flt: StatsFilter) -> list[tuple[str, str, str, str, int]]:
    """(site, adapter, model verdict, reviewer verdict, count) over reviewed inspections."""
    stmt = (
        sa.select(
            Inspection.site, Verdict.adapter, Verdict.verdict, Review.final_verdict, sa.func.count()
        )
        .join(Verdict, Verdict.inspection_id == Inspection.id)
        .join(Review, Review.inspection_id == Inspection.id)
        .where(*_where(flt), _latest_review())
        .group_by(Inspection.site, Verdict.adapter, Verdict.verdict, Review.final_verdict)
    )
    return [(s, a, v, f, int(n)) for s, a, v, f, n in session.execute(stmt)]


def reviewed_histogram(session: Session, flt: StatsFilter) -> list[tuple[int, str, int]]:
    """(P(PASS) bucket of BUCKETS, reviewer verdict, count) over reviewed inspections."""
    bucket = _bucket(session)
    stmt = (
        sa.select(bucket, Review.final_verdict, sa.func.count())
        .select_from(Inspection)
        .join(Verdict, Verdict.inspection_id == Inspection.id)
        .join(Review, Review.inspection_id == Inspection.id)
        .where(*_where(flt), _latest_review())
        .group_by(bucket, Review.final_verdict)
    )
    return [(int(b), f, int(n)) for b, f, n in session.execute(stmt)]
