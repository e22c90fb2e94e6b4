"""The numbers page's data, computed once for the page, the API and the charts; and each
site's shadow adapter against its champion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inspector.quality import DEFAULT_THRESHOLDS, WhatIf
from inspector.quality.shadow import ShadowComparison
from inspector.review import metrics
from inspector.review.context import AppContext
from inspector.store import stats as stats_store
from inspector.store.shadow import reviewed_shadow_count, shadow_adapters, shadow_comparison
from inspector.store.stats import StatsFilter


class StatsQuery(BaseModel):
    """Filters of the numbers page (empty strings mean "any")."""

    model_config = ConfigDict(extra="ignore")

    site: str = Field("", pattern=r"^([a-z0-9][a-z0-9-]{0,63})?$")
    adapter: str = Field("", max_length=64)
    since: date | None = None
    until: date | None = None
    threshold: float | None = Field(None, ge=0.5, le=1, description="what-if threshold")

    @field_validator("since", "until", "threshold", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    def store_filter(self) -> StatsFilter:
        """The store's filter."""

        def start(day: date | None) -> datetime | None:
            return datetime.combine(day, time.min, tzinfo=UTC) if day else None

        return StatsFilter(
            site=self.site or None,
            adapter=self.adapter or None,
            since=start(self.since),
            until=start(self.until + timedelta(days=1)) if self.until else None,
        )


@dataclass
class Numbers:
    """Everything the numbers page shows."""

    groups: dict[tuple[str, str], metrics.Tally]
    total: metrics.Tally
    per_line_hour: dict[str, list[int]]
    histogram: list[tuple[int, str, int]]
    threshold: float
    site_threshold: float | None

    def what_if(self) -> list[WhatIf]:
        """The what-if table: the usual thresholds plus the chosen and the site's."""
        points = set(DEFAULT_THRESHOLDS) | {self.threshold}
        if self.site_threshold is not None:
            points.add(self.site_threshold)
        return metrics.what_if_curve(self.histogram, sorted(points))


def compute(ctx: AppContext, q: StatsQuery, with_hours: bool = True) -> Numbers:
    """Run the store aggregates for these filters and tally them."""
    flt = q.store_filter()
    with ctx.store.db.read() as session:
        verdict_rows = stats_store.verdict_counts(session, flt)
        reviewed_rows = stats_store.reviewed_counts(session, flt)
        histogram = stats_store.reviewed_histogram(session, flt)
        hour_rows = stats_store.hourly_counts(session, flt) if with_hours else []
    groups, total = metrics.tally(verdict_rows, reviewed_rows)
    site_threshold = ctx.threshold(q.site) if q.site else None
    threshold = q.threshold or site_threshold or ctx.threshold("default")
    # Leanings are known from the P(PASS) histogram, which covers the filtered total.
    total.confusion.lean_right = metrics.lean_right(histogram, threshold)
    return Numbers(
        groups, total, metrics.per_line_hour(hour_rows), histogram, threshold, site_threshold
    )


@dataclass(frozen=True, slots=True)
class ShadowStanding:
    """A site's shadow adapter: its share, its reviewed live inspections, champion vs it."""

    site: str
    challenger: str  # name@version
    share: float | None
    reviewed: int  # reviewed inspections it judged: what the promotion gate counts
    required: int  # sites.<site>.min_shadow_reviews
    comparison: ShadowComparison | None  # None until one of them is reviewed


def shadow_standings(ctx: AppContext, site: str = "") -> list[ShadowStanding]:
    """Each site's shadow adapter (of `site`, or of every site) against its champion.

    On every reviewed live inspection it judged, whatever the page's dates: the gate counts
    them all.
    """
    with ctx.store.db.read() as session:
        return [
            ShadowStanding(
                site=record.site,
                challenger=record.ref,
                share=record.shadow_share,
                reviewed=reviewed_shadow_count(session, record.name, record.version),
                required=ctx.settings.site(record.site).min_shadow_reviews,
                comparison=shadow_comparison(session, record),
            )
            for record in shadow_adapters(session, [site] if site else ()).values()
        ]
