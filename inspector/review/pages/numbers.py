"""The numbers page: per site and adapter version, confusion matrix, threshold what-if."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from inspector.quality import FIGURE, percent, shown
from inspector.review import charts
from inspector.review.auth import Principal, page_user
from inspector.review.context import AppContext, app_context
from inspector.review.metrics import FINALS, VERDICTS, what_if_curve
from inspector.review.numbers import StatsQuery, compute, shadow_standings
from inspector.review.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/stats")
def stats_page(
    q: StatsQuery = Depends(),
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Escapes per defective and per shipped part, false rejects, REVIEW share, what-if, and
    each site's shadow adapter against its champion."""
    n = compute(ctx, q, with_hours=False)
    query = q.model_dump(exclude_defaults=True)
    return render(
        ctx,
        "stats.html",
        who,
        q=q,
        n=n,
        rows=[(site, adapter, t.rates()) for (site, adapter), t in n.groups.items()],
        total=n.total.rates(),
        verdicts=VERDICTS,
        finals=FINALS,
        confusion=n.total.model_to_reviewer(),
        what_if=[w.model_dump() for w in n.what_if()],
        figure=FIGURE,
        shown=shown,
        percent=percent,
        chart_query=urlencode(query),
        shadows=shadow_standings(ctx, q.site),
    )


def _svg(data: bytes) -> Response:
    return Response(
        data, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=60"}
    )


@router.get("/stats/hourly.svg")
def hourly_chart(
    q: StatsQuery = Depends(),
    _who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """Verdicts per line and hour of day."""
    return _svg(charts.per_hour(compute(ctx, q).per_line_hour))


@router.get("/stats/threshold.svg")
def threshold_chart(
    q: StatsQuery = Depends(),
    _who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """The what-if curves."""
    n = compute(ctx, q, with_hours=False)
    points = what_if_curve(n.histogram, [round(0.5 + 0.01 * i, 2) for i in range(51)])
    return _svg(charts.threshold_curve([p.model_dump() for p in points], n.threshold))
