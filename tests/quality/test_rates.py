"""The quality rates: each counts what its name says, per what its name says."""

from __future__ import annotations

import pytest

from inspector.quality import (
    Decision,
    Outcome,
    calibration_error,
    decide,
    holdout_metrics,
    sweep,
    threshold_for_escape_target,
)

ROWS = [
    Outcome("PASS", 0.95),
    Outcome("PASS", 0.80),
    Outcome("PASS", 0.60),  # REVIEW at 0.7
    Outcome("PASS", 0.20),  # false reject
    Outcome("FAIL", 0.05),
    Outcome("FAIL", 0.30),
    Outcome("FAIL", 0.75),  # escape at 0.7
    Outcome("FAIL", 0.65),  # leans PASS, REVIEW at 0.7
]


def test_a_part_leans_pass_from_one_half_and_goes_to_review_below_the_threshold() -> None:
    assert decide(0.5, 0.5).decision is Decision.PASS
    assert decide(0.4999, 0.5).decision is Decision.FAIL
    unsure = decide(0.3, 0.8)
    assert (unsure.decision, unsure.leaning) == (Decision.REVIEW, Decision.FAIL)
    assert unsure.confidence == pytest.approx(0.7)


def test_holdout_figures_at_the_site_threshold() -> None:
    m = holdout_metrics(ROWS, 0.7)
    assert (m.parts, m.good_parts, m.defective_parts) == (8, 4, 4)
    assert m.lean_accuracy == pytest.approx(5 / 8)  # leanings: 3 PASS right, 2 FAIL right
    assert m.verdict_accuracy == pytest.approx(4 / 6)  # of the 6 parts not sent to REVIEW
    assert m.majority_share == 0.5
    assert m.escapes_per_defective_part == pytest.approx(1 / 4)
    assert m.escapes_per_shipped_part_ppm == pytest.approx(1 / 3 * 1_000_000)  # 1 of 3 PASS
    assert m.false_rejects_per_good_part == pytest.approx(1 / 4)
    assert m.review_share == pytest.approx(2 / 8)
    assert m.confusion.cells == {
        "PASS": {Decision.PASS: 2, Decision.FAIL: 1, Decision.REVIEW: 1},
        "FAIL": {Decision.PASS: 1, Decision.FAIL: 2, Decision.REVIEW: 1},
    }


def test_rates_without_a_denominator_are_none_not_zero() -> None:
    m = holdout_metrics([Outcome("PASS", 0.6)], 0.7)
    assert m.escapes_per_defective_part is None and m.escapes_per_shipped_part_ppm is None
    assert m.verdict_accuracy is None and m.review_share == 1.0


def test_calibration_error_is_zero_when_confidence_matches_accuracy() -> None:
    calibrated = [Outcome("PASS", 0.75)] * 3 + [Outcome("FAIL", 0.75)]
    assert calibration_error(calibrated) == pytest.approx(0.0)
    overconfident = [Outcome("FAIL", 0.99)] * 4
    assert calibration_error(overconfident) == pytest.approx(0.99)


def test_the_threshold_meeting_the_escape_target_costs_the_fewest_reviews() -> None:
    found = threshold_for_escape_target(ROWS, target=0.0)
    assert found.escapes_per_defective_part == 0.0
    assert 0.75 < found.threshold < 0.76  # just above the most confident escape
    assert found.review_share == pytest.approx(4 / 8)
    loose = threshold_for_escape_target(ROWS, target=0.5)
    assert loose.threshold == 0.5 and loose.review_share == 0.0


def test_raising_the_threshold_moves_escapes_into_review() -> None:
    weighted = [Outcome("FAIL", 0.9, 2), Outcome("PASS", 0.9, 6), Outcome("PASS", 0.6)]
    low, high = sweep([*weighted, Outcome("PASS", 0.01)], [0.55, 0.95])
    assert low.escapes_per_defective_part == 1.0 and low.review_share == 0.0
    assert low.false_rejects_per_good_part == pytest.approx(1 / 8)
    assert high.escapes_per_defective_part == 0.0 and high.review_share == pytest.approx(0.9)
