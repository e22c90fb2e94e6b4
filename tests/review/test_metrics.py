"""The what-if arithmetic: the engine's decision rule replayed on reviewed P(PASS)."""

from __future__ import annotations

from inspector.review.metrics import what_if


def test_raising_the_threshold_moves_escapes_into_review() -> None:
    # (P(PASS) bucket of 1000, reviewer verdict, count)
    histogram = [(900, "FAIL", 2), (900, "PASS", 6), (600, "PASS", 1), (10, "PASS", 1)]
    low = what_if(histogram, 0.55)
    assert low == {
        "threshold": 0.55,
        "escape_rate": 0.2,
        "false_reject_rate": 0.1,
        "review_rate": 0.0,
    }
    high = what_if(histogram, 0.95)
    assert high["escape_rate"] == 0 and high["review_rate"] == 0.9
    assert what_if([], 0.7)["escape_rate"] is None
