"""The numbers per site and adapter version, as JSON."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from inspector.review.api.defs import GroupStats, Rates, StatsOut, WhatIf
from inspector.review.auth import Principal, api_user
from inspector.review.context import AppContext, app_context
from inspector.review.numbers import StatsQuery, compute

router = APIRouter(tags=["stats"])


@router.get("/stats", response_model=StatsOut)
def stats(
    q: StatsQuery = Depends(),
    _who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> StatsOut:
    """Escapes per defective and per shipped part, false rejects, REVIEW share, what-if."""
    n = compute(ctx, q)
    return StatsOut(
        groups=[
            GroupStats(site=site, adapter=adapter, **tally.rates())
            for (site, adapter), tally in n.groups.items()
        ],
        total=Rates(**n.total.rates()),
        confusion=n.total.model_to_reviewer(),
        what_if=[WhatIf(**w.model_dump()) for w in n.what_if()],
        per_line_hour=n.per_line_hour,
    )
