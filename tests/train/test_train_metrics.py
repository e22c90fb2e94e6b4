"""Holdout figures: escapes, false rejects, REVIEWs, calibration, the escape-target threshold."""

from __future__ import annotations

import pytest

from inspector.errors import Code, RejectedInput
from inspector.protocol import (
    AdapterAnnouncement,
    adapter_control_topic,
    parse_adapter_announcement,
    utcnow,
)
from inspector.train.metrics import (
    Scored,
    calibration_error,
    holdout_metrics,
    threshold_for_escape_target,
)

ROWS = [
    Scored("PASS", 0.95),
    Scored("PASS", 0.80),
    Scored("PASS", 0.60),  # REVIEW at 0.7
    Scored("PASS", 0.20),  # false reject
    Scored("FAIL", 0.05),
    Scored("FAIL", 0.30),
    Scored("FAIL", 0.75),  # escape at 0.7
    Scored("FAIL", 0.65),  # leans PASS, REVIEW at 0.7
]


def test_metrics_at_the_site_threshold() -> None:
    m = holdout_metrics(ROWS, 0.7)
    assert (m["n"], m["n_pass"], m["n_fail"]) == (8, 4, 4)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["escape_rate"] == pytest.approx(1 / 4)
    assert m["false_reject_rate"] == pytest.approx(1 / 4)
    assert m["review_rate"] == pytest.approx(2 / 8)
    assert m["confusion"] == {
        "PASS": {"PASS": 2, "FAIL": 1, "REVIEW": 1},
        "FAIL": {"PASS": 1, "FAIL": 2, "REVIEW": 1},
    }


def test_calibration_error_is_zero_when_confidence_matches_accuracy() -> None:
    calibrated = [Scored("PASS", 0.75)] * 3 + [Scored("FAIL", 0.75)]
    assert calibration_error(calibrated) == pytest.approx(0.0)
    overconfident = [Scored("FAIL", 0.99)] * 4
    assert calibration_error(overconfident) == pytest.approx(0.99)


def test_the_threshold_meeting_the_escape_target_costs_the_fewest_reviews() -> None:
    found = threshold_for_escape_target(ROWS, target=0.0)
    assert found["escape_rate"] == 0.0
    assert 0.75 < found["threshold"] < 0.76  # just above the most confident escape
    assert found["review_rate"] == pytest.approx(4 / 8)
    loose = threshold_for_escape_target(ROWS, target=0.5)
    assert loose["threshold"] == 0.5 and loose["review_rate"] == 0.0


def test_control_announcement_names_all_or_nothing() -> None:
    full = AdapterAnnouncement(
        site="osaka", name="osaka", version=3, sha256="f" * 64, announced_at=utcnow()
    )
    topic = adapter_control_topic("osaka")
    assert topic == "inspector/v1/control/adapters/osaka"
    assert parse_adapter_announcement(full.to_payload(), topic) == full
    with pytest.raises(RejectedInput) as info:
        parse_adapter_announcement(b'{"site": "osaka", "name": "osaka", "announced_at": "x"}')
    assert info.value.code is Code.PAYLOAD_INVALID
    with pytest.raises(RejectedInput) as info:
        parse_adapter_announcement(full.to_payload(), adapter_control_topic("kyoto"))
    assert info.value.code is Code.PAYLOAD_TOPIC_MISMATCH
