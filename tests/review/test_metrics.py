"""The numbers page's what-if: the one decision rule replayed on reviewed P(PASS)."""

from __future__ import annotations

from inspector.review.metrics import what_if_curve


def test_raising_the_threshold_moves_escapes_into_review() -> None:
    # (P(PASS) bucket of 1000, reviewer verdict, count)
    histogram = [(900, "FAIL", 2), (900, "PASS", 6), (600, "PASS", 1), (10, "PASS", 1)]
    low, high = what_if_curve(histogram, [0.55, 0.95])
    assert low.threshold == 0.55
    assert low.escapes_per_defective_part == 1.0  # both FAIL parts decided PASS
    assert low.escapes_per_shipped_part_ppm == 2 / 9 * 1_000_000
    assert low.false_rejects_per_good_part == 1 / 8
    assert low.review_share == 0.0
    assert high.escapes_per_defective_part == 0 and high.review_share == 0.9
    assert what_if_curve([], [0.7])[0].escapes_per_defective_part is None
