"""Dataset snapshots: the latest review labels each part, the newest share is the holdout."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from inspector.errors import Code, DatasetRefused
from inspector.settings import TrainSettings
from inspector.store import ReviewInput, Store, record_review
from inspector.train.dataset import balance_report, build_snapshot, read_snapshot
from tests.train.parts import START, add_reviewed

SETTINGS = TrainSettings(min_reviews=12, min_per_class=4, holdout_share=0.25)


def test_snapshot_freezes_labels_targets_and_a_time_split(store: Store, unique: str) -> None:
    ids = add_reviewed(store, unique, 16)
    add_reviewed(store, "other-site", 4)
    snap = build_snapshot(store, unique, SETTINGS, "qe-1")

    assert [item.request_id for item in snap.items] == ids  # oldest first, this site only
    assert [item.split for item in snap.items] == ["train"] * 12 + ["holdout"] * 4
    holdout_times = [item.captured_at for item in snap.split("holdout")]
    assert min(holdout_times) > max(item.captured_at for item in snap.split("train"))
    assert snap.counts["train"] == {"PASS": 6, "FAIL": 6}
    assert snap.counts["holdout"] == {"PASS": 2, "FAIL": 2}
    assert balance_report(snap)[-1] == ("total", 8, 8, 16, "50%")
    # FAIL: the reviewer's comment; PASS confirmed: the verdict's rationale.
    assert snap.items[1].target == " FAIL\nDefects: scratch (across the plate)."
    assert snap.items[0].target == " PASS\nthe plate looks even"
    assert read_snapshot(store, snap.id).content_hash == snap.content_hash
    # The same reviews freeze to the same content; a new review changes it.
    again = build_snapshot(store, unique, SETTINGS, "qe-1")
    assert again.id != snap.id and again.content_hash == snap.content_hash


def test_the_latest_review_is_the_label(store: Store, unique: str) -> None:
    ids = add_reviewed(store, unique, 12)
    with store.db.write() as session:
        record_review(
            session,
            ReviewInput(
                review_id=uuid.uuid4(),
                request_id=uuid.UUID(ids[0]),
                decision="override",
                final_verdict="FAIL",
                reviewer="qe-2",
                comment="Defects: dent (corner), seen on a second look.",
            ),
        )
    snap = build_snapshot(store, unique, SETTINGS, "qe-1")
    first = snap.items[0]
    assert first.label == "FAIL" and first.target.endswith("seen on a second look.")
    assert snap.counts["by_label"] == {"PASS": 5, "FAIL": 7}


def test_since_and_until_bound_the_capture_time(store: Store, unique: str) -> None:
    add_reviewed(store, unique, 20)
    snap = build_snapshot(
        store,
        unique,
        SETTINGS,
        "qe-1",
        since=START + timedelta(minutes=2),
        until=START + timedelta(minutes=16),
    )
    assert len(snap.items) == 14
    assert snap.items[0].captured_at == START + timedelta(minutes=2)


def test_too_few_reviews_is_refused_naming_both_counts(store: Store, unique: str) -> None:
    add_reviewed(store, unique, 7)
    with pytest.raises(DatasetRefused) as info:
        build_snapshot(store, unique, SETTINGS, "qe-1")
    assert info.value.code is Code.TRAIN_TOO_FEW_REVIEWS
    assert "7 reviewed inspection(s) (4 PASS, 3 FAIL)" in info.value.message
    assert "at least 12" in info.value.message


def test_a_missing_class_is_refused(store: Store, unique: str) -> None:
    add_reviewed(store, unique, 14, labels=["PASS"] * 13 + ["FAIL"])
    with pytest.raises(DatasetRefused) as info:
        build_snapshot(store, unique, SETTINGS, "qe-1")
    assert info.value.code is Code.TRAIN_CLASS_MISSING
    assert "13 PASS, 1 FAIL" in info.value.message and "short of FAIL" in info.value.message


def test_a_holdout_without_one_verdict_is_refused(store: Store, unique: str) -> None:
    # Every FAIL is old: the most recent quarter holds PASS parts only.
    add_reviewed(store, unique, 16, labels=["FAIL"] * 6 + ["PASS"] * 10)
    with pytest.raises(DatasetRefused) as info:
        build_snapshot(store, unique, SETTINGS, "qe-1")
    assert info.value.code is Code.TRAIN_CLASS_MISSING
    assert "holdout split" in info.value.message and "no FAIL" in info.value.message
