"""Query parameters shared by the queue page, the queue API and the export.

They map onto the store's one filter (store.queue.QueueFilter); pages are keyed by the
store's one cursor (store.filters.Cursor, passed as its token).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inspector.review.edge import FIRST_DAY, LAST_DAY
from inspector.store.queue import QueueFilter

Tab = Literal["review", "fail", "audit", "all", "shadow"]
Reviewed = Literal["no", "yes", "any"]
SLUG_OR_EMPTY = r"^([a-z0-9][a-z0-9-]{0,63})?$"


class QueueQuery(BaseModel):
    """The queue's filters, as query parameters (empty strings mean "any")."""

    model_config = ConfigDict(extra="ignore")

    tab: Tab = Field(
        "review",
        description="review, fail, audit (a PASS sample), all, or shadow (a shadow adapter "
        "decided otherwise)",
    )
    site: str = Field("", pattern=SLUG_OR_EMPTY)
    line: str = Field("", pattern=SLUG_OR_EMPTY)
    station: str = Field("", pattern=SLUG_OR_EMPTY)
    verdict: Literal["", "PASS", "FAIL", "REVIEW"] = ""
    since: date | None = Field(
        None, ge=FIRST_DAY, le=LAST_DAY, description="captured on or after this day (UTC)"
    )
    until: date | None = Field(
        None, ge=FIRST_DAY, le=LAST_DAY, description="captured on or before this day (UTC)"
    )
    reviewed: Reviewed = Field("no", description="no: only those you have not reviewed")
    adapter: str = Field("", max_length=64)
    min_confidence: float | None = Field(None, ge=0, le=1)
    max_confidence: float | None = Field(None, ge=0, le=1)
    part_id: str = Field("", max_length=128, description="part id prefix")
    note_disagrees: bool = Field(
        False, description="only inspections whose operator's note disagrees with the verdict"
    )

    @field_validator("since", "until", "min_confidence", "max_confidence", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    def store_filter(self, audit_percent: float) -> QueueFilter:
        """The store's filter for these parameters."""
        return QueueFilter(
            tab=self.tab,
            site=self.site or None,
            line=self.line or None,
            station=self.station or None,
            verdict=self.verdict or None,
            since=_start(self.since),
            until=_start(self.until + timedelta(days=1)) if self.until else None,
            reviewed={"no": False, "yes": True, "any": None}[self.reviewed],
            adapter=self.adapter or None,
            min_confidence=self.min_confidence,
            max_confidence=self.max_confidence,
            part_id=self.part_id or None,
            note_disagrees=self.note_disagrees,
            audit_percent=audit_percent,
        )

    def query_string(self, **override: object) -> str:
        """These parameters as a URL query (defaults left out), with some replaced."""
        values = {**self.model_dump(exclude_defaults=True), **override}
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def _start(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if day else None
