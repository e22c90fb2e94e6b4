"""The golden-part rule: when a worker's answer to a golden part counts as the reviewed one.

An answer agrees when its leaning (PASS/FAIL before the site threshold) is the reviewed
PASS/FAIL, and its P(PASS) is within `tolerance` of the reference P(PASS) of the same
adapter version (the reviewed verdict's, or the first canary answer of that version). A
worker whose adapter was tampered with or swapped keeps its version name and moves P(PASS);
a promoted adapter is a new version with a reference of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from inspector.quality.decision import Decision, leaning


class GoldenOutcome(StrEnum):
    """How a worker answered one golden part."""

    AGREES = "agrees"
    LEANING = "leaning"  # the leaning is not the reviewed answer
    DRIFT = "drift"  # the leaning is right, P(PASS) is outside the tolerance of the reference
    MISSING = "missing"  # no answer within the canary period


@dataclass(frozen=True, slots=True)
class GoldenCheck:
    """One answer judged: the outcome and the numbers it was judged on."""

    outcome: GoldenOutcome
    expected: Decision
    p_pass: float | None
    reference_p_pass: float | None

    @property
    def agrees(self) -> bool:
        """True when the answer is the reviewed one."""
        return self.outcome is GoldenOutcome.AGREES


def judge_golden(
    expected: Decision, p_pass: float, reference_p_pass: float, tolerance: float
) -> GoldenCheck:
    """Judge one answer to a golden part against its reviewed answer and reference."""
    if leaning(p_pass) is not expected:
        outcome = GoldenOutcome.LEANING
    elif abs(p_pass - reference_p_pass) > tolerance:
        outcome = GoldenOutcome.DRIFT
    else:
        outcome = GoldenOutcome.AGREES
    return GoldenCheck(outcome, expected, p_pass, reference_p_pass)


def missing(expected: Decision) -> GoldenCheck:
    """A golden part that got no answer within the canary period."""
    return GoldenCheck(GoldenOutcome.MISSING, expected, None, None)
