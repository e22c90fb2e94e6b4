"""The review queue: per-user reviewed marks, tab counts, calendar, detail, history, export.

Every listing is "an inspection with its latest verdict", ordered newest capture first and
paged by key (captured_at, id), so a page costs the same on page 1 and page 2 000 and stays
stable while new inspections arrive. The latest verdict and review are the inspection's own
`verdict_id` / `verdict` / `review_id` (kept by store.tallies), so a tab is one index range.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, noload

from inspector.errors import InvalidReview, NotFound, ReviewConflict
from inspector.protocol import utcnow
from inspector.store.inspections import find_inspection
from inspector.store.models import (
    Inspection,
    InspectionMedia,
    Media,
    Review,
    ReviewMark,
    Verdict,
    utc,
)
from inspector.store.tallies import day_of, review_recorded, verdict_totals
from inspector.store.verdicts import VerdictFilter, latest_verdict

TABS = ("review", "fail", "audit", "all")
Cursor = tuple[datetime, int]


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


def _mine(user_id: int) -> sa.Exists:
    return sa.exists().where(
        ReviewMark.user_id == user_id, ReviewMark.inspection_id == Inspection.id
    )


def _tab(tab: str, audit_percent: float) -> list[sa.ColumnElement[bool]]:
    if tab == "review":
        return [Inspection.verdict == "REVIEW"]
    if tab == "fail":
        return [Inspection.verdict == "FAIL"]
    if tab == "audit":
        return [audit_condition(audit_percent)]
    return []  # every inspection with a verdict: the join to it (_scoped) says which


def _conditions(flt: QueueFilter, user_id: int) -> list[sa.ColumnElement[bool]]:
    conds = flt.scope().where() + _tab(flt.tab, flt.audit_percent)
    if flt.reviewed is not None:
        conds.append(_mine(user_id) if flt.reviewed else ~_mine(user_id))
    return conds


def _before(cursor: Cursor) -> sa.ColumnElement[bool]:
    at, iid = utc(cursor[0]), cursor[1]
    return sa.or_(
        Inspection.captured_at < at, sa.and_(Inspection.captured_at == at, Inspection.id < iid)
    )


def _after(cursor: Cursor) -> sa.ColumnElement[bool]:
    at, iid = utc(cursor[0]), cursor[1]
    return sa.or_(
        Inspection.captured_at > at, sa.and_(Inspection.captured_at == at, Inspection.id > iid)
    )


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
        return (self.captured_at, self.inspection_id)


def _latest_review_verdict() -> sa.ScalarSelect[Any]:
    return (
        sa.select(Review.final_verdict).where(Review.id == Inspection.review_id).scalar_subquery()
    )


def _with_verdict(stmt: Any) -> Any:
    """`stmt` over inspections joined to their latest verdicts."""
    return stmt.select_from(Inspection).join(Verdict, Verdict.id == Inspection.verdict_id)


# Which part, where and when: the first columns of a queue row and of an export row.
_PART_COLUMNS = (
    Inspection.id,
    Inspection.request_id,
    Inspection.site,
    Inspection.line,
    Inspection.station,
    Inspection.part_id,
    Inspection.captured_at,
)


def _items_select(user_id: int) -> Any:
    stmt: Any = sa.select(
        *_PART_COLUMNS,
        Verdict.verdict,
        Verdict.confidence,
        Verdict.adapter,
        _latest_review_verdict(),
        _mine(user_id),
    )
    return _with_verdict(stmt)


def _item(row: sa.Row[Any]) -> QueueItem:
    values: tuple[Any, ...] = tuple(row)
    iid, rid, site, line, station, part, at, verdict, conf, adapter, review, mine = values
    return QueueItem(
        iid, rid, site, line, station, part, utc(at), verdict, conf, adapter, review, bool(mine)
    )


def queue_page(
    session: Session,
    flt: QueueFilter,
    user_id: int,
    after: Cursor | None = None,
    limit: int = 50,
) -> tuple[list[QueueItem], Cursor | None]:
    """One page of the queue after `after`, and the cursor of the next page (None: last)."""
    conds = _conditions(flt, user_id)
    if after is not None:
        conds.append(_before(after))
    stmt = (
        _items_select(user_id)
        .where(*conds)
        .order_by(Inspection.captured_at.desc(), Inspection.id.desc())
        .limit(limit + 1)
    )
    items = [_item(r) for r in session.execute(stmt)]
    more = len(items) > limit
    items = items[:limit]
    return items, (items[-1].cursor if more and items else None)


def neighbours(
    session: Session, flt: QueueFilter, user_id: int, cursor: Cursor
) -> tuple[str | None, str | None]:
    """The request_ids before and after `cursor` in the queue order (previous, next)."""
    base = _scoped(sa.select(Inspection.request_id), flt).where(*_conditions(flt, user_id))
    nxt = session.scalar(
        base.where(_before(cursor))
        .order_by(Inspection.captured_at.desc(), Inspection.id.desc())
        .limit(1)
    )
    prev = session.scalar(
        base.where(_after(cursor))
        .order_by(Inspection.captured_at.asc(), Inspection.id.asc())
        .limit(1)
    )
    return prev, nxt


def _scoped(stmt: Any, flt: QueueFilter) -> Any:
    """`stmt` over the filter's inspections, joined to their latest verdicts where needed."""
    if flt.tab == "all":
        return _with_verdict(stmt)  # the join is what says "has a verdict"
    return _over(stmt, flt.scope())


def _over(stmt: Any, scope: VerdictFilter) -> Any:
    """`stmt` over inspections, joined to their latest verdict where the scope names it."""
    return _with_verdict(stmt) if scope.needs_verdicts else stmt.select_from(Inspection)


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
        marked = dict(session.execute(stmt).tuples().all())
        review, fail = (kept[v] - int(marked.get(v, 0)) for v in review_fail)
    else:
        counts = (sa.func.count().filter(Inspection.verdict == v) for v in review_fail)
        stmt = _over(sa.select(*counts), scope).where(
            *scope.where(), ~_mine(user_id), Inspection.verdict.in_(review_fail)
        )
        review, fail = session.execute(stmt).one()
    # The audit sample depends on a review setting, so it is not kept: PASS verdicts are
    # counted along their own index range.
    audit_stmt = _over(sa.select(sa.func.count()), scope).where(
        *scope.where(), ~_mine(user_id), audit_condition(flt.audit_percent)
    )
    audited = session.scalar(audit_stmt) or 0
    return {"review": int(review), "fail": int(fail), "audit": int(audited)}


def calendar(
    session: Session, flt: QueueFilter, user_id: int, start: datetime, end: datetime
) -> list[tuple[str, int]]:
    """Days (YYYY-MM-DD, UTC) between start and end with unreviewed items, and how many."""
    scoped = QueueFilter(**{**_fields(flt), "since": start, "until": end, "reviewed": False})
    day = day_of(session, Inspection.captured_at)
    stmt = (
        _scoped(sa.select(day, sa.func.count()), scoped)
        .where(*_conditions(scoped, user_id))
        .group_by(day)
        .order_by(day)
    )
    return [(str(d), int(n)) for d, n in session.execute(stmt)]


def _fields(flt: QueueFilter) -> dict[str, Any]:
    return {name: getattr(flt, name) for name in QueueFilter.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A photo or voice note of an inspection, by hash."""

    role: str
    sha256: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class VerdictView:
    """A stored verdict as the review app shows it."""

    id: int
    verdict: str
    confidence: float
    p_pass: float
    rationale: str
    transcript: str | None
    defects: list[dict[str, Any]]
    model: str
    adapter: str
    adapter_fallback: bool
    prompt_version: str
    worker_id: str
    latency_ms: float
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewView:
    """One entry of an inspection's review history."""

    review_id: str
    verdict_id: int | None
    decision: str
    final_verdict: str
    defect_type: str | None
    comment: str | None
    reviewer: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InspectionDetail:
    """Everything about one inspection: media, every verdict, the full review history."""

    id: int
    request_id: str
    site: str
    line: str
    station: str
    part_id: str
    captured_at: datetime
    received_at: datetime
    operator: str | None
    note: str | None
    media: list[MediaRef]
    verdicts: list[VerdictView] = field(default_factory=list)
    reviews: list[ReviewView] = field(default_factory=list)
    reviewed_by_me: bool = False

    @property
    def verdict(self) -> VerdictView | None:
        """The latest verdict: the one the queue shows."""
        return self.verdicts[-1] if self.verdicts else None

    @property
    def cursor(self) -> Cursor:
        """The key of this inspection in the queue order."""
        return (self.captured_at, self.id)


def _verdict_view(v: Verdict) -> VerdictView:
    return VerdictView(
        v.id,
        v.verdict,
        v.confidence,
        v.p_pass,
        v.rationale,
        v.transcript,
        list(v.defects),
        v.model,
        v.adapter,
        v.adapter_fallback,
        v.prompt_version,
        v.worker_id,
        v.latency_ms,
        utc(v.decided_at),
    )


def _review_view(r: Review) -> ReviewView:
    return ReviewView(
        r.review_id,
        r.verdict_id,
        r.decision,
        r.final_verdict,
        r.defect_type,
        r.comment,
        r.reviewer,
        utc(r.created_at),
    )


def _inspection_id(session: Session, request_id: str) -> int:
    iid = session.scalar(sa.select(Inspection.id).where(Inspection.request_id == request_id))
    if iid is None:
        raise NotFound(f"no inspection {request_id}")
    return iid


def inspection_detail(session: Session, request_id: str, user_id: int) -> InspectionDetail:
    """One inspection with its media, verdicts (oldest first) and reviews (oldest first)."""
    # Four queries: the inspection with the user's mark, its media, verdicts and reviews; the
    # relationships' own eager loads (media, each verdict's inspection) are not wanted here.
    found = session.execute(
        sa.select(Inspection, _mine(user_id))
        .options(noload(Inspection.media))
        .where(Inspection.request_id == request_id)
    ).first()
    if found is None:
        raise NotFound(f"no inspection {request_id}")
    insp, mine = found
    media = [
        MediaRef(role, sha, ctype, size)
        for role, sha, ctype, size in session.execute(
            sa.select(InspectionMedia.role, Media.sha256, Media.content_type, Media.size)
            .join(Media, Media.sha256 == InspectionMedia.sha256)
            .where(InspectionMedia.inspection_id == insp.id)
            .order_by(InspectionMedia.position)
        )
    ]
    verdicts = session.scalars(
        sa.select(Verdict)
        .options(noload(Verdict.inspection))
        .where(Verdict.inspection_id == insp.id)
        .order_by(Verdict.id)
    )
    reviews = session.scalars(
        sa.select(Review).where(Review.inspection_id == insp.id).order_by(Review.id)
    )
    return InspectionDetail(
        insp.id,
        insp.request_id,
        insp.site,
        insp.line,
        insp.station,
        insp.part_id,
        utc(insp.captured_at),
        utc(insp.received_at),
        insp.operator,
        insp.note,
        media,
        [_verdict_view(v) for v in verdicts],
        [_review_view(r) for r in reviews],
        bool(mine),
    )


def review_history(session: Session, request_id: str) -> list[ReviewView]:
    """Every review of an inspection, oldest first."""
    iid = _inspection_id(session, request_id)
    rows = session.scalars(sa.select(Review).where(Review.inspection_id == iid).order_by(Review.id))
    return [_review_view(r) for r in rows]


def media_ref(session: Session, sha256: str) -> MediaRef | None:
    """A stored blob's metadata, if any inspection's media has this hash."""
    row = session.execute(
        sa.select(Media.kind, Media.sha256, Media.content_type, Media.size).where(
            Media.sha256 == sha256
        )
    ).first()
    return MediaRef(row[0], row[1], row[2], row[3]) if row is not None else None


def _insert_ignoring_duplicates(session: Session) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return sqlite.insert(ReviewMark).on_conflict_do_nothing()
    return postgresql.insert(ReviewMark).on_conflict_do_nothing()


def mark_reviewed(session: Session, user_id: int, request_ids: Sequence[str]) -> int:
    """Mark inspections reviewed by this user (already marked ones stay); return how many."""
    ids = list(
        session.scalars(sa.select(Inspection.id).where(Inspection.request_id.in_(request_ids)))
    )
    if len(ids) != len(set(request_ids)):
        raise NotFound("some of these inspections do not exist")
    now = datetime.now(UTC)
    session.execute(
        _insert_ignoring_duplicates(session),
        [{"user_id": user_id, "inspection_id": iid, "marked_at": now} for iid in ids],
    )
    return len(ids)


def mark_unreviewed(session: Session, user_id: int, request_id: str) -> None:
    """Put an inspection back in this user's unreviewed queue."""
    iid = _inspection_id(session, request_id)
    session.execute(
        sa.delete(ReviewMark).where(ReviewMark.user_id == user_id, ReviewMark.inspection_id == iid)
    )


def set_reviewed(session: Session, user_id: int, request_id: str, reviewed: bool) -> None:
    """Mark one inspection reviewed by this user, or put it back in their queue."""
    if reviewed:
        mark_reviewed(session, user_id, [request_id])
    else:
        mark_unreviewed(session, user_id, request_id)


def review_inspections(
    session: Session, user_id: int, reviews: Sequence[ReviewInput]
) -> list[ReviewView]:
    """Append reviews (idempotent by review_id) and mark the inspections reviewed by the user."""
    out = [_review_view(record_review(session, review)[0]) for review in reviews]
    mark_reviewed(session, user_id, [str(r.request_id) for r in reviews])
    return out


EXPORT_COLUMNS = (
    "request_id",
    "site",
    "line",
    "station",
    "part_id",
    "captured_at",
    "operator",
    "note",
    "verdict",
    "confidence",
    "p_pass",
    "rationale",
    "transcript",
    "defects",
    "model",
    "adapter",
    "prompt_version",
    "latency_ms",
    "decided_at",
    "review_decision",
    "review_verdict",
    "review_defect_type",
    "review_comment",
    "reviewer",
    "reviewed_at",
    "reviews",
    "media",
)


_EXPORT_SELECT = (
    *_PART_COLUMNS,
    Inspection.operator,
    Inspection.note,
    Verdict.verdict,
    Verdict.confidence,
    Verdict.p_pass,
    Verdict.rationale,
    Verdict.transcript,
    Verdict.defects,
    Verdict.model,
    Verdict.adapter,
    Verdict.prompt_version,
    Verdict.latency_ms,
    Verdict.decided_at,
    Review.decision,
    Review.final_verdict,
    Review.defect_type,
    Review.comment,
    Review.reviewer,
    Review.created_at,
)


def iter_export(
    session: Session, flt: QueueFilter, user_id: int, limit: int | None = None, chunk: int = 1000
) -> Iterator[dict[str, Any]]:
    """The queue's inspections with latest verdict, latest review and media hashes, by chunk."""
    review_count = (
        sa.select(sa.func.count())
        .where(Review.inspection_id == Inspection.id)
        .correlate(Inspection)
        .scalar_subquery()
    )
    base = (
        _with_verdict(sa.select(*_EXPORT_SELECT, review_count))
        .outerjoin(Review, Review.id == Inspection.review_id)
        .where(*_conditions(flt, user_id))
        .order_by(Inspection.captured_at.desc(), Inspection.id.desc())
    )
    conn = session.connection()  # Core rows: no ORM loading for thousands of rows
    after: Cursor | None = None
    left = limit
    while left is None or left > 0:
        size = chunk if left is None else min(chunk, left)
        stmt = base.where(_before(after)) if after is not None else base
        rows = conn.execute(stmt.limit(size)).all()
        if not rows:
            return
        media = _media_of(conn, [r[0] for r in rows])
        for row in rows:
            yield _export_row(tuple(row), media.get(row[0], []))
        after = (rows[-1][6], rows[-1][0])
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


def _iso(value: datetime | None) -> str | None:
    return utc(value).isoformat() if value is not None else None


def _export_row(row: tuple[Any, ...], media: list[tuple[str, str]]) -> dict[str, Any]:
    (_, rid, site, line, station, part, captured, operator, note, verdict, conf, p_pass,
     rationale, transcript, defects, model, adapter, prompt, latency, decided,
     decision, final, defect_type, comment, reviewer, reviewed_at, count) = row  # fmt: skip
    return {
        "request_id": rid,
        "site": site,
        "line": line,
        "station": station,
        "part_id": part,
        "captured_at": _iso(captured),
        "operator": operator,
        "note": note,
        "verdict": verdict,
        "confidence": conf,
        "p_pass": p_pass,
        "rationale": rationale,
        "transcript": transcript,
        "defects": [d.get("type") for d in defects if isinstance(d, dict)],
        "model": model,
        "adapter": adapter,
        "prompt_version": prompt,
        "latency_ms": latency,
        "decided_at": _iso(decided),
        "review_decision": decision,
        "review_verdict": final,
        "review_defect_type": defect_type,
        "review_comment": comment,
        "reviewer": reviewer,
        "reviewed_at": _iso(reviewed_at),
        "reviews": int(count),
        "media": [{"role": role, "sha256": sha} for role, sha in media],
    }


def parse_request_id(value: str) -> str:
    """A request_id in its stored spelling; NotFound for anything that is not a UUID."""
    try:
        return str(UUID(value))
    except ValueError:
        raise NotFound(f"no inspection {value[:80]!r}") from None


def media_of(session: Session, request_id: str) -> list[MediaRef]:
    """An inspection's media in order (photos first, then the voice note)."""
    return [
        MediaRef(role, sha, ctype, size)
        for role, sha, ctype, size in session.execute(
            sa.select(InspectionMedia.role, Media.sha256, Media.content_type, Media.size)
            .join(Media, Media.sha256 == InspectionMedia.sha256)
            .join(Inspection, Inspection.id == InspectionMedia.inspection_id)
            .where(Inspection.request_id == request_id)
            .order_by(InspectionMedia.position)
        )
    ]


@dataclass(frozen=True, slots=True)
class ReviewInput:
    """A quality engineer's decision on one inspection."""

    review_id: UUID
    request_id: UUID
    decision: Literal["confirm", "override"]
    final_verdict: Literal["PASS", "FAIL"]
    reviewer: str
    defect_type: str | None = None
    comment: str | None = None


def record_review(session: Session, review: ReviewInput) -> tuple[Review, bool]:
    """Append a review once per review_id; the same id with other content is refused."""
    inspection = find_inspection(session, review.request_id)
    if inspection is None:
        raise NotFound(f"no inspection {review.request_id} to review")
    if review.decision not in ("confirm", "override") or review.final_verdict not in (
        "PASS",
        "FAIL",
    ):
        raise InvalidReview("decision must be confirm|override and final_verdict PASS|FAIL")
    if not review.reviewer.strip():
        raise InvalidReview("a review needs the reviewer's name")
    verdict = latest_verdict(session, review.request_id)
    existing = session.scalar(sa.select(Review).where(Review.review_id == str(review.review_id)))
    if existing is not None:
        same = (
            existing.inspection_id == inspection.id
            and existing.decision == review.decision
            and existing.final_verdict == review.final_verdict
            and existing.reviewer == review.reviewer
            and existing.defect_type == review.defect_type
            and existing.comment == review.comment
        )
        if not same:
            raise ReviewConflict(
                f"review {review.review_id} was already recorded with different content"
            )
        return existing, False
    row = Review(
        review_id=str(review.review_id),
        inspection_id=inspection.id,
        verdict_id=verdict.id if verdict is not None else None,
        decision=review.decision,
        final_verdict=review.final_verdict,
        defect_type=review.defect_type,
        comment=review.comment,
        reviewer=review.reviewer,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    review_recorded(session, inspection.id, row.id)
    return row, True
