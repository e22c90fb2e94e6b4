"""Holdout results: an adapter's figures at a threshold, the what-if sweep, the escape
target's threshold, calibration, and the evaluation a promotion is judged on.

Everything here reads the outcomes through `decide` and the rates of `rates`, so the
promotion gate, `inspector adapters eval` and the review app's numbers agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from inspector.quality.decision import Decision, confidence, leaning
from inspector.quality.rates import (
    Confusion,
    Outcome,
    Rates,
    confusion_at,
    escapes_per_defective_part,
    escapes_per_shipped_part_ppm,
    false_rejects_per_good_part,
    percent,
    rates_of,
    review_share,
)

CALIBRATION_BINS = 10


def calibration_error(outcomes: Sequence[Outcome], bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: |lean accuracy − confidence| per confidence bin, weighted."""
    parts = sum(o.parts for o in outcomes)
    if not parts:
        return 0.0
    totals = [[0, 0.0, 0] for _ in range(bins)]  # parts, sum of confidence, leaning right
    for o in outcomes:
        sure = confidence(o.p_pass)
        # Confidence lies in [0.5, 1]; the bins spread over that range.
        cell = totals[min(bins - 1, int((sure - 0.5) * 2 * bins))]
        cell[0] += o.parts
        cell[1] += sure * o.parts
        cell[2] += o.parts if leaning(o.p_pass).value == o.label else 0
    return sum(n / parts * abs(right / n - sure_sum / n) for n, sure_sum, right in totals if n)


class HoldoutMetrics(Rates):
    """One adapter's figures on a holdout at one threshold."""

    threshold: float
    confusion: Confusion
    calibration_error: float


def holdout_metrics(outcomes: Sequence[Outcome], threshold: float) -> HoldoutMetrics:
    """Every figure of one adapter on a holdout at `threshold`."""
    counted = confusion_at(outcomes, threshold)
    return HoldoutMetrics(
        **rates_of(counted),
        threshold=threshold,
        confusion=counted,
        calibration_error=calibration_error(outcomes),
    )


class WhatIf(BaseModel):
    """The rates had the threshold been `threshold`."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    escapes_per_defective_part: float | None
    escapes_per_shipped_part_ppm: float | None
    false_rejects_per_good_part: float | None
    review_share: float | None


def what_if(outcomes: Iterable[Outcome], threshold: float) -> WhatIf:
    """Escapes, false rejects and REVIEWs of judged parts at another threshold."""
    c = confusion_at(outcomes, threshold)
    return WhatIf(
        threshold=threshold,
        escapes_per_defective_part=escapes_per_defective_part(c),
        escapes_per_shipped_part_ppm=escapes_per_shipped_part_ppm(c),
        false_rejects_per_good_part=false_rejects_per_good_part(c),
        review_share=review_share(c.verdict_total(Decision.REVIEW), c.parts),
    )


def sweep(outcomes: Sequence[Outcome], thresholds: Iterable[float]) -> list[WhatIf]:
    """`what_if` at each threshold."""
    return [what_if(outcomes, t) for t in thresholds]


DEFAULT_THRESHOLDS = [round(0.5 + 0.05 * i, 2) for i in range(10)]


class TargetPoint(WhatIf):
    """The lowest threshold whose escapes per defective part meet a target."""

    target: float


def threshold_for_escape_target(outcomes: Sequence[Outcome], target: float) -> TargetPoint:
    """The lowest threshold whose escapes per defective part are at most `target`.

    Raising the threshold turns the least confident decisions into REVIEWs, escapes
    included, so the lowest threshold that meets the target costs the fewest REVIEWs.
    """
    defective = sum(o.parts for o in outcomes if o.label == "FAIL")
    escaping = sorted(
        (o.p_pass, o.parts) for o in outcomes if o.label == "FAIL" and leaning(o.p_pass) == "PASS"
    )
    # Thresholds that change something: 0.5 (no REVIEW at all) and just above the
    # confidence of each defective part leaning PASS.
    chosen = 1.0  # every decision but a certain one becomes a REVIEW
    for threshold in [0.5] + [math.nextafter(p, 2.0) for p, _ in escaping]:
        left = sum(n for p, n in escaping if p >= threshold)
        if not defective or left / defective <= target:
            chosen = min(threshold, 1.0)
            break
    return TargetPoint(**what_if(outcomes, chosen).model_dump(), target=target)


class Baseline(BaseModel):
    """What the candidate is compared with: the site's active adapter, or the base."""

    model_config = ConfigDict(extra="forbid")

    adapter: str  # name@version, or BASE
    metrics: HoldoutMetrics
    for_target: TargetPoint


class Evaluation(BaseModel):
    """A candidate and what its site serves, scored on one snapshot's holdout."""

    model_config = ConfigDict(extra="forbid")

    adapter: str  # name@version
    snapshot_id: int
    content_hash: str
    holdout: int
    site_threshold: float
    escape_target: float
    candidate: HoldoutMetrics
    candidate_for_target: TargetPoint
    baseline: Baseline
    evaluated_at: datetime

    def refusal(self) -> str | None:
        """Why the promotion gate refuses the candidate, or None when it lets it through.

        The gate's rule: the candidate lets no larger share of the defective parts pass
        than the baseline on the same holdout, at the site threshold.
        """
        ours = self.candidate.escapes_per_defective_part or 0.0
        theirs = self.baseline.metrics.escapes_per_defective_part or 0.0
        if ours <= theirs:
            return None
        return (
            f"{self.adapter} lets {percent(ours)} of the defective parts pass on its holdout, "
            f"{self.baseline.adapter} {percent(theirs)}"
        )


def stored_evaluation(metrics: Mapping[str, Any]) -> Evaluation | None:
    """The evaluation stored with an adapter's metrics; None when it has none we can read.

    Evaluations stored by earlier versions used other rate names; they read as none, so
    the adapter is evaluated again before it is judged.
    """
    body = metrics.get("eval")
    if not isinstance(body, Mapping):
        return None
    try:
        return Evaluation.model_validate(body)
    except ValidationError:
        return None
