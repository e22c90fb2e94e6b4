"""Holdout metrics of one adapter: what a quality engineer needs to decide on a promotion.

- accuracy: the verdict the model leans to (PASS or FAIL, before the threshold) is the label;
- escape rate: FAIL parts decided PASS, over the FAIL parts (a defect shipped);
- false-reject rate: PASS parts decided FAIL, over the PASS parts (scrap or rework);
- REVIEW rate: parts whose confidence is below the site threshold, over all parts;
- calibration error: expected calibration error of the confidence over ten equal bins.

A REVIEW is neither an escape nor a false reject: the part goes to a person.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inspector.engine.policy import decide
from inspector.protocol import Decision

CALIBRATION_BINS = 10


@dataclass(frozen=True, slots=True)
class Scored:
    """One holdout example: its label and the model's P(PASS)."""

    label: str  # PASS | FAIL
    p_pass: float


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def calibration_error(rows: Sequence[Scored], bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: |accuracy − confidence| per confidence bin, weighted."""
    if not rows:
        return 0.0
    totals = [[0, 0.0, 0] for _ in range(bins)]  # count, sum of confidence, correct
    for row in rows:
        confidence = max(row.p_pass, 1 - row.p_pass)
        # Confidence lies in [0.5, 1]; spread the bins over that range.
        index = min(bins - 1, int((confidence - 0.5) * 2 * bins))
        leaning = "PASS" if row.p_pass >= 0.5 else "FAIL"
        cell = totals[index]
        cell[0] += 1
        cell[1] += confidence
        cell[2] += int(leaning == row.label)
    error = 0.0
    for count, conf_sum, correct in totals:
        if count:
            error += count / len(rows) * abs(correct / count - conf_sum / count)
    return error


def holdout_metrics(rows: Sequence[Scored], threshold: float) -> dict[str, Any]:
    """Every figure of `inspector adapters eval` for one adapter at one threshold."""
    confusion = {label: {d.value: 0 for d in Decision} for label in ("PASS", "FAIL")}
    correct = 0
    for row in rows:
        scored = decide(row.p_pass, threshold)
        confusion[row.label][scored.decision.value] += 1
        correct += int(scored.leaning.value == row.label)
    n_pass = sum(confusion["PASS"].values())
    n_fail = sum(confusion["FAIL"].values())
    reviews = confusion["PASS"]["REVIEW"] + confusion["FAIL"]["REVIEW"]
    return {
        "n": len(rows),
        "n_pass": n_pass,
        "n_fail": n_fail,
        "threshold": threshold,
        "accuracy": _rate(correct, len(rows)),
        "escape_rate": _rate(confusion["FAIL"]["PASS"], n_fail),
        "false_reject_rate": _rate(confusion["PASS"]["FAIL"], n_pass),
        "review_rate": _rate(reviews, len(rows)),
        "calibration_error": calibration_error(rows),
        "confusion": confusion,
    }


def threshold_for_escape_target(rows: Sequence[Scored], target: float) -> dict[str, Any]:
    """The lowest threshold whose escape rate is at most `target`, and its REVIEW rate.

    Raising the threshold turns the least confident decisions into REVIEWs, escapes
    included, so the lowest threshold that meets the target costs the fewest REVIEWs.
    """
    fails = [r for r in rows if r.label == "FAIL"]
    # Thresholds that change something: 0.5 (no REVIEW at all) and just above each
    # confidence of a FAIL part leaning PASS.
    escaping = sorted(r.p_pass for r in fails if r.p_pass >= 0.5)
    candidates = [0.5] + [math.nextafter(p, 2.0) for p in escaping]
    chosen = None
    for threshold in candidates:
        left = sum(1 for p in escaping if p >= threshold)
        if not fails or left / len(fails) <= target:
            chosen = threshold
            break
    if chosen is None or chosen > 1.0:
        chosen = 1.0  # every decision but a certain one becomes a REVIEW
    at = holdout_metrics(rows, chosen)
    return {
        "target": target,
        "threshold": chosen,
        "escape_rate": at["escape_rate"],
        "review_rate": at["review_rate"],
        "false_reject_rate": at["false_reject_rate"],
    }
