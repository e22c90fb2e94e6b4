"""The one decision rule: a PASS or FAIL leaning from P(PASS), REVIEW below the threshold.

Serving, training, evaluation, the review app's what-if and its "confirm" all apply this
rule; nobody else compares P(PASS) with 0.5 or a confidence with a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Decision(StrEnum):
    """A verdict: PASS, FAIL, or REVIEW (a person decides)."""

    PASS = "PASS"
    FAIL = "FAIL"
    REVIEW = "REVIEW"


def leaning(p_pass: float) -> Decision:
    """PASS when P(PASS) is at least one half, else FAIL: the verdict before the threshold."""
    return Decision.PASS if p_pass >= 0.5 else Decision.FAIL


def confidence(p_pass: float) -> float:
    """The probability of the leaning: max(P(PASS), P(FAIL))."""
    return max(p_pass, 1.0 - p_pass)


@dataclass(frozen=True, slots=True)
class Decided:
    """The decision on one part: the verdict, the leaning it came from, and how sure."""

    decision: Decision
    leaning: Decision  # PASS or FAIL: the word the rationale continues from
    confidence: float
    p_pass: float


def decide(p_pass: float, threshold: float) -> Decided:
    """The leaning when its confidence reaches `threshold`, else REVIEW."""
    lean = leaning(p_pass)
    sure = confidence(p_pass)
    return Decided(lean if sure >= threshold else Decision.REVIEW, lean, sure, p_pass)
