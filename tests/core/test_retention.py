"""Media retention: old blobs go, rows stay, every removal is audited, shared blobs survive."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer

from inspector.protocol import AudioPart, ImagePart, InspectionRequest, sha256_hex, utcnow
from inspector.store import (
    ReviewInput,
    Store,
    find_inspection,
    record_inspection,
    record_review,
    record_verdict,
)
from inspector.store.datasets import ItemInput, save_snapshot
from inspector.store.models import Inspection, RemovedMedia, RetentionRun, Verdict
from inspector.store.retention import apply_retention, plan_retention
from inspector.store.retention_cli import parse_age
from tests.core.helpers import jpeg, make_request, verdict_for, wav

NOTE = wav(seconds=0.5)  # one voice note shared by every inspection, as a fixed clip would be


def _inspect(store: Store, photo: bytes, days_ago: float) -> InspectionRequest:
    """Store an inspection with a verdict, received `days_ago` days ago."""
    req = make_request(
        images=[ImagePart.from_bytes("image/jpeg", photo)],
        audio=AudioPart.from_bytes("audio/wav", NOTE),
    )
    with store.db.write() as s:
        row, _ = record_inspection(s, store.blobs, req)
        record_verdict(s, verdict_for(req))
        when = utcnow() - timedelta(days=days_ago)
        s.execute(
            sa.update(Inspection)
            .where(Inspection.id == row.id)
            .values(received_at=when, captured_at=when)
        )
    return req


def _count(store: Store, model: type) -> int:
    with store.db.read() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_only_blobs_no_younger_inspection_uses_are_removed_and_rows_stay(store: Store) -> None:
    old_only, shared = jpeg(seed=1), jpeg(seed=2)
    _inspect(store, old_only, days_ago=120)
    _inspect(store, shared, days_ago=100)
    _inspect(store, shared, days_ago=3)  # the same photo again, recently: its file stays
    cutoff = utcnow() - timedelta(days=90)

    plan = plan_retention(store.db, store.blobs, cutoff)
    assert [b.sha256 for b in plan.blobs] == [sha256_hex(old_only)]
    assert plan.bytes == len(old_only) and plan.inspections == 1 and plan.by_kind() == {"image": 1}
    # A plan is a dry run: nothing is touched.
    assert store.blobs.present(sha256_hex(old_only)) and _count(store, RetentionRun) == 0

    result = apply_retention(store.db, store.blobs, plan, actor="qa@host")
    assert (result.removed, result.bytes) == (1, len(old_only))
    assert not store.blobs.present(sha256_hex(old_only))
    for kept in (shared, NOTE):
        assert store.blobs.present(sha256_hex(kept))
    assert _count(store, Inspection) == 3 and _count(store, Verdict) == 3
    with store.db.read() as s:
        run = s.scalars(sa.select(RetentionRun)).one()
        removed = s.scalars(sa.select(RemovedMedia)).one()
    assert (run.media_removed, run.bytes_removed, run.actor) == (1, len(old_only), "qa@host")
    assert run.finished_at is not None
    assert (removed.run_id, removed.sha256, removed.kind) == (run.id, sha256_hex(old_only), "image")

    again = plan_retention(store.db, store.blobs, cutoff)
    assert again.blobs == () and again.already_gone == 1


def test_media_of_a_training_snapshot_stay_unless_snapshots_are_included(store: Store) -> None:
    trained, other = jpeg(seed=6), jpeg(seed=7)
    req = _inspect(store, trained, days_ago=150)
    _inspect(store, other, days_ago=150)
    with store.db.write() as s:
        review, _ = record_review(
            s,
            ReviewInput(
                review_id=uuid.uuid4(),
                request_id=req.request_id,
                decision="override",
                final_verdict="PASS",
                reviewer="qa",
            ),
        )
        inspection = find_inspection(s, req.request_id)
        assert inspection is not None
        save_snapshot(
            s,
            site="osaka",
            content_hash="0" * 64,
            since=None,
            until=None,
            holdout_share=0.25,
            counts={"PASS": 1},
            items=[ItemInput(inspection.id, review.id, "train", "PASS", "PASS")],
            actor="trainer",
        )
    cutoff = utcnow() - timedelta(days=90)

    plan = plan_retention(store.db, store.blobs, cutoff)
    assert {b.sha256 for b in plan.blobs} == {sha256_hex(other)}
    assert plan.kept_for_snapshots == 2  # the trained photo and the shared note
    apply_retention(store.db, store.blobs, plan, actor="qa")
    assert store.blobs.present(sha256_hex(trained)) and not store.blobs.present(sha256_hex(other))

    told = plan_retention(store.db, store.blobs, cutoff, include_snapshots=True)
    assert {b.sha256 for b in told.blobs} == {sha256_hex(trained), sha256_hex(NOTE)}
    apply_retention(store.db, store.blobs, told, actor="qa")
    assert not store.blobs.present(sha256_hex(trained))
    with store.db.read() as s:
        runs = s.scalars(sa.select(RetentionRun).order_by(RetentionRun.id)).all()
    assert [(r.include_snapshots, r.media_kept_for_snapshots) for r in runs] == [
        (False, 2),
        (True, 0),
    ]


def test_a_blob_used_again_after_the_plan_is_kept(store: Store) -> None:
    photo = jpeg(seed=3)
    _inspect(store, photo, days_ago=200)
    plan = plan_retention(store.db, store.blobs, utcnow() - timedelta(days=90))
    assert {b.sha256 for b in plan.blobs} == {sha256_hex(photo), sha256_hex(NOTE)}
    _inspect(store, photo, days_ago=0)  # the station sent the same photo and note meanwhile
    result = apply_retention(store.db, store.blobs, plan, actor="qa")
    assert (result.removed, result.skipped_now_young) == (0, 2)
    assert store.blobs.present(sha256_hex(photo)) and store.blobs.present(sha256_hex(NOTE))


def test_a_file_lost_without_its_audit_row_is_recorded_by_the_next_run(store: Store) -> None:
    photo = jpeg(seed=4)
    _inspect(store, photo, days_ago=200)
    store.blobs.remove(sha256_hex(photo))  # a run that died between delete and commit
    plan = plan_retention(store.db, store.blobs, utcnow() - timedelta(days=90))
    assert sha256_hex(photo) in {b.sha256 for b in plan.blobs}
    assert apply_retention(store.db, store.blobs, plan, actor="qa").removed == 2  # photo, note
    with store.db.read() as s:
        recorded = set(s.scalars(sa.select(RemovedMedia.sha256)))
    assert recorded == {sha256_hex(photo), sha256_hex(NOTE)}
    assert plan_retention(store.db, store.blobs, utcnow() - timedelta(days=90)).blobs == ()


def _cli(tmp_path: Path, store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "inspector.toml"
    config.write_text(f'[store]\nurl = "{store.db.url}"\nblob_dir = "{store.blobs.root}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "inspector", "--config", str(config), "retention", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
        check=False,
    )


def test_retention_command_is_a_dry_run_unless_told_to_apply(
    sqlite_url: str, tmp_path: Path
) -> None:
    store = Store(sqlite_url, tmp_path / "blobs")
    store.upgrade()
    try:
        photo = jpeg(seed=5)
        _inspect(store, photo, days_ago=100)
        dry = _cli(tmp_path, store, "--older-than", "90d")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "dry run" in dry.stdout and "would remove 2 blob" in dry.stdout
        assert store.blobs.present(sha256_hex(photo))

        done = _cli(tmp_path, store, "--older-than", "90d", "--apply")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "removed 2 blob" in done.stdout
        assert not store.blobs.present(sha256_hex(photo))

        refused = _cli(tmp_path, store, "--older-than", "90x")
        assert refused.returncode == 2 and "--older-than" in refused.stderr
    finally:
        store.close()


def test_ages_are_days_or_weeks_of_at_least_one_day() -> None:
    assert parse_age("90d") == timedelta(days=90) and parse_age("12w") == timedelta(days=84)
    for bad in ("90", "90x", "0d", "-3d", "1.5d", ""):
        with pytest.raises(typer.BadParameter, match="90d or 12w"):
            parse_age(bad)
