"""Which inspections a listing selects, and where a page of it ends.

One filter (`VerdictFilter`, which the review queue's `QueueFilter` extends), one `Cursor`
and one keyset predicate serve the CLI's verdict listing, the review queue and the exports.
Every listing is ordered newest capture first, then by id, and pages by key: a page costs
the same on page 1 and page 2 000, and rows arriving meanwhile neither shift nor repeat one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, aliased

from inspector.errors import InvalidInput
from inspector.store.models import Inspection, ReviewMark, Verdict, utc


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
    note_disagrees: bool = False  # True: only where the operator's note disagrees

    def where(self) -> list[sa.ColumnElement[bool]]:
        """The filter as SQL conditions on each verdict (the verdict listing: every verdict)."""
        conds = self._conditions(Verdict.verdict, Verdict.adapter, Verdict.confidence)
        if self.note_disagrees:
            conds.append(Verdict.note_disagrees.is_(True))
        return conds

    def on_latest(self) -> list[sa.ColumnElement[bool]]:
        """The filter as SQL conditions on inspections, by the copy of their latest verdict.

        The review queue and the exports select inspections by their latest verdict; its
        columns are kept on the inspection (store.tallies), so these name one table.
        """
        conds = self._conditions(Inspection.verdict, Inspection.adapter, Inspection.confidence)
        if self.note_disagrees:
            # Few verdicts carry the flag: an EXISTS on the latest verdict by its primary key
            # rather than one more copied column on every inspection. Its own alias, correlated
            # to the inspection alone, as the exports also join `verdicts` outside it.
            flagged = aliased(Verdict)
            conds.append(
                sa.exists()
                .where(flagged.id == Inspection.verdict_id, flagged.note_disagrees.is_(True))
                .correlate(Inspection)
            )
        return conds

    def _conditions(
        self, verdict: Any, adapter: Any, confidence: Any
    ) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        if self.site:
            conds.append(Inspection.site == self.site)
        if self.line:
            conds.append(Inspection.line == self.line)
        if self.station:
            conds.append(Inspection.station == self.station)
        if self.verdict:
            conds.append(verdict == self.verdict)
        if self.since:
            conds.append(Inspection.captured_at >= self.since)
        if self.until:
            conds.append(Inspection.captured_at < self.until)
        if self.adapter:
            conds.append(adapter == self.adapter)
        if self.min_confidence is not None:
            conds.append(confidence >= self.min_confidence)
        if self.max_confidence is not None:
            conds.append(confidence <= self.max_confidence)
        if self.part_id:
            conds.append(part_id_prefix(self.part_id))
        return conds


def part_id_prefix(prefix: str) -> sa.ColumnElement[bool]:
    """Part ids that start with `prefix` (its % and _ taken literally).

    The pattern is one bound string, not the prefix concatenated with '%' in SQL: SQLite uses
    an index for a LIKE only when its pattern is a literal or a parameter, and PostgreSQL
    plans it from the value. Case follows the database's LIKE, as before: exact on
    PostgreSQL, ASCII case ignored on SQLite.
    """
    escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return Inspection.part_id.like(escaped + "%", escape="/")


def reviewed_by(user_id: int) -> sa.Exists:
    """Inspections this user marked reviewed (the reviewed state is per user)."""
    return sa.exists().where(
        ReviewMark.user_id == user_id, ReviewMark.inspection_id == Inspection.id
    )


# What a cursor may hold: an id the integer key columns can hold, and a capture time the
# app can compute with (a day either side of it still a valid datetime) and store.
MAX_ID = 2**31 - 1
_ID = re.compile(r"[0-9]{1,10}")
FIRST_CAPTURE = datetime(1970, 1, 1, tzinfo=UTC)
LAST_CAPTURE = datetime(9998, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last row's capture time and id (the listing's key).

    The id is the listed row's own: a verdict's in the verdict listing, an inspection's in
    the review queue and the exports.
    """

    captured_at: datetime
    id: int
    # The review queue's REVIEW tab leads its key with the verdict's confidence (most
    # uncertain first); None in every other listing.
    rank: float | None = None

    @classmethod
    def after(cls, row: Verdict) -> Cursor:
        """The cursor just past a verdict of the verdict listing."""
        return cls(row.inspection.captured_at, row.id)

    def token(self) -> str:
        """The cursor as text a user can pass back (`verdicts list --after`, `?cursor=`)."""
        key = f"{utc(self.captured_at).isoformat()}~{self.id}"
        return key if self.rank is None else f"{key}~{self.rank!r}"

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """A cursor from :meth:`token`'s text; InvalidInput says what is wrong with it."""
        rank: float | None = None
        if token.count("~") == 2:
            token, _, ranked = token.rpartition("~")
            rank = _rank(ranked)
        when, sep, ident = token.rpartition("~")
        try:
            if not sep or not _ID.fullmatch(ident) or int(ident) > MAX_ID:
                raise ValueError
            captured = datetime.fromisoformat(when)
            if captured.tzinfo is None:
                raise InvalidInput("the cursor's capture time has no time zone")
            captured = utc(captured)
        except (ValueError, OverflowError):
            raise InvalidInput(
                "the cursor is not one a listing printed (capture time~id); "
                "start from the first page"
            ) from None
        if not FIRST_CAPTURE <= captured <= LAST_CAPTURE:
            raise InvalidInput(
                "the cursor's capture time is out of range; start from the first page"
            )
        return cls(captured, int(ident), rank)


_RANK = re.compile(r"[01](\.[0-9]{1,20})?(e-[0-9]{1,3})?|[0-9]\.[0-9]{1,20}e-[0-9]{1,3}")


def _rank(text: str) -> float:
    """A cursor's confidence: a float of [0, 1] as repr() writes it."""
    value = float(text) if _RANK.fullmatch(text) else -1.0
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(
            "the cursor is not one a listing printed (capture time~id~confidence); "
            "start from the first page"
        )
    return value


def newest_first(key: QueryableAttribute[int]) -> tuple[sa.UnaryExpression[Any], ...]:
    """The listing order: newest capture first, then by key, highest first."""
    return (Inspection.captured_at.desc(), key.desc())


def older(cursor: Cursor, key: QueryableAttribute[int]) -> sa.ColumnElement[bool]:
    """Rows after `cursor` in the listing order (older capture, or same capture, lower key)."""
    at = Inspection.captured_at
    return sa.or_(at < cursor.captured_at, sa.and_(at == cursor.captured_at, key < cursor.id))


def newer(cursor: Cursor, key: QueryableAttribute[int]) -> sa.ColumnElement[bool]:
    """Rows before `cursor` in the listing order (the previous page's direction)."""
    at = Inspection.captured_at
    return sa.or_(at > cursor.captured_at, sa.and_(at == cursor.captured_at, key > cursor.id))
