"""The SQL store on SQLite and PostgreSQL: migrations, blobs and idempotent records."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from inspector.errors import Code, DuplicateConflict, NotFound, ReviewConflict
from inspector.protocol import (
    Decision,
    ImagePart,
    RejectionMessage,
    sha256_hex,
    utcnow,
)
from inspector.store import (
    ReviewInput,
    Store,
    VerdictFilter,
    iter_export,
    latest_verdict,
    list_verdicts,
    record_inspection,
    record_rejection,
    record_review,
    record_verdict,
    verdict_message,
)
from inspector.store.blobs import BlobStore
from inspector.store.database import alembic_config
from inspector.store.models import Base, Inspection, Media, Rejection, Review, Verdict
from inspector.store.queue import (
    AUDIT_SLOTS,
    QueueFilter,
    audit_slot,
    queue_page,
    unreviewed_counts,
)
from inspector.store.tallies import day_of
from tests.core.helpers import jpeg, make_request, verdict_for


def test_migration_from_empty_matches_the_models_and_is_idempotent(db_url: str) -> None:
    store = Store(db_url, Path("unused"))
    try:
        head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
        assert store.upgrade() == head
        assert store.upgrade() == head
        with store.db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            tables = set(sa.inspect(conn).get_table_names())
        assert diff == []
        assert {"inspections", "media", "verdicts", "reviews", "adapters", "rejections"} <= tables
    finally:
        store.close()


def test_migration_copies_each_inspections_latest_verdict_for_the_queue_filters(
    db_url: str,
) -> None:
    command.upgrade(alembic_config(db_url), "0007")
    engine = sa.create_engine(db_url)
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    inspection = (
        "INSERT INTO inspections (id, request_id, fingerprint, site, line, station, part_id, "
        "captured_at, received_at, verdict_id, verdict) VALUES (:id, :rid, 'f', 'osaka', 'l1', "
        "'s1', :part, :t, :t, :vid, :verdict)"
    )
    verdict = (
        "INSERT INTO verdicts (id, inspection_id, verdict, confidence, p_pass, rationale, "
        "defects, model, adapter, adapter_fallback, prompt_version, worker_id, latency_ms, "
        "decided_at) VALUES (:id, :iid, :verdict, :conf, :p, 'r', '[]', 'phi', :adapter, "
        "false, :prompt, 'w', 1.0, :t)"
    )
    with engine.begin() as conn:
        for iid, part, vid, latest in (
            (1, "KB-1", 2, "REVIEW"),
            (2, "KB-2", 3, "FAIL"),
            (3, "KB-3", None, None),  # no verdict yet
        ):
            conn.execute(
                sa.text(inspection),
                {"id": iid, "rid": str(uuid.uuid4()), "part": part, "t": t0, "vid": vid}
                | {"verdict": latest},
            )
        for vid, iid, v, p, adapter, prompt in (
            (1, 1, "FAIL", 0.1, "v1", "p1"),  # replaced by verdict 2
            (2, 1, "REVIEW", 0.4, "v2", "p2"),
            (3, 2, "FAIL", 0.2, "v1", "p1"),
        ):
            conn.execute(
                sa.text(verdict),
                {"id": vid, "iid": iid, "verdict": v, "conf": max(p, 1 - p), "p": p}
                | {"adapter": adapter, "prompt": prompt, "t": t0},
            )
    engine.dispose()
    store = Store(db_url, Path("unused"))
    try:
        head = store.upgrade()
        assert store.upgrade() == head  # idempotent
        with store.db.read() as s:
            rows = s.execute(
                sa.select(Inspection.id, Inspection.confidence, Inspection.p_pass)
                .add_columns(Inspection.adapter)
                .order_by(Inspection.id)
            ).all()
            assert [tuple(r) for r in rows] == [
                (1, 0.6, 0.4, "v2"),
                (2, 0.8, 0.2, "v1"),
                (3, None, None, None),
            ]

            def listed(**flt: Any) -> list[str]:
                items, _ = queue_page(s, QueueFilter(reviewed=None, **flt), user_id=1)
                return [i.part_id for i in items]

            assert listed(tab="review", adapter="v2", max_confidence=0.6) == ["KB-1"]
            assert listed(tab="all", adapter="v1") == ["KB-2"]
            assert listed(tab="all", part_id="KB-") == ["KB-2", "KB-1"]
            assert listed(tab="fail", min_confidence=0.9) == []
    finally:
        store.close()


def test_the_pass_audit_draws_the_inspections_audit_slot_names(store: Store) -> None:
    reqs = [make_request(part_id=f"P-{n:03d}") for n in range(40)]
    with store.db.write() as s:
        for req in reqs:
            record_inspection(s, store.blobs, req)
            record_verdict(s, verdict_for(req, verdict=Decision.PASS, p_pass=0.95))
    flt = QueueFilter(tab="audit", reviewed=None, audit_percent=25)
    with store.db.read() as s:
        ids = s.scalars(sa.select(Inspection.id)).all()
        drawn = {i for i in ids if audit_slot(i) < AUDIT_SLOTS // 4}
        items, _ = queue_page(s, flt, user_id=1, limit=100)
        counts = unreviewed_counts(s, flt, user_id=1)
    assert 0 < len(drawn) < len(ids)
    assert {i.inspection_id for i in items} == drawn
    assert counts["audit"] == len(drawn)


def test_inspection_is_stored_once_with_its_media_on_disk(store: Store) -> None:
    req = make_request()
    with store.db.write() as s:
        row, created = record_inspection(s, store.blobs, req)
        assert created
    with store.db.write() as s:
        again, created = record_inspection(s, store.blobs, req)
        assert not created and again.id == row.id
    with store.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Inspection)) == 1
        insp = s.scalar(sa.select(Inspection))
        assert insp is not None
        assert [m.role for m in insp.media] == ["image", "audio"]
        for link in insp.media:
            media = s.get(Media, link.sha256)
            assert media is not None
            assert store.blobs.get(link.sha256) == (store.blobs.root / media.path).read_bytes()
    assert store.blobs.get(req.images[0].sha256) == req.images[0].data


def test_same_request_id_with_other_content_is_a_conflict(store: Store) -> None:
    req = make_request()
    with store.db.write() as s:
        record_inspection(s, store.blobs, req)
    other = req.model_copy(update={"images": [ImagePart.from_bytes("image/jpeg", jpeg(seed=9))]})
    with pytest.raises(DuplicateConflict) as info, store.db.write() as s:
        record_inspection(s, store.blobs, other)
    assert info.value.code is Code.DUPLICATE_CONFLICT
    with store.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Inspection)) == 1


def test_shared_photos_are_stored_once(store: Store) -> None:
    a, b = make_request(), make_request()
    with store.db.write() as s:
        record_inspection(s, store.blobs, a)
        record_inspection(s, store.blobs, b)
    with store.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Media)) == 2  # photo + note


def test_verdict_is_idempotent_and_round_trips(store: Store) -> None:
    req = make_request()
    with store.db.write() as s:
        record_inspection(s, store.blobs, req)
        _first, created = record_verdict(s, verdict_for(req))
        assert created
        _, created = record_verdict(s, verdict_for(req, rationale="again"))
        assert not created
        _, created = record_verdict(s, verdict_for(req, adapter="osaka-v2"))
        assert created
    with store.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Verdict)) == 2
        latest = latest_verdict(s, req.request_id)
        assert latest is not None and latest.adapter == "osaka-v2"
        msg = verdict_message(latest)
    assert msg.request_id == req.request_id and msg.verdict is Decision.FAIL
    assert msg.defects[0].type == "dent" and msg.decided_at.tzinfo is not None


def test_verdict_without_inspection_is_refused(store: Store) -> None:
    with pytest.raises(NotFound), store.db.write() as s:
        record_verdict(s, verdict_for(make_request()))


def test_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    req = make_request()
    with pytest.raises(RuntimeError), store.db.write() as s:
        record_inspection(s, store.blobs, req)
        raise RuntimeError("crash before commit")
    with store.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Inspection)) == 0


def test_rejection_is_stored_once_with_payload_up_to_the_limit(store: Store) -> None:
    payload = b'{"schema": "nope"}'
    msg = RejectionMessage(
        code=Code.PAYLOAD_UNSUPPORTED_SCHEMA.value,
        message="unsupported",
        payload_sha256=sha256_hex(payload),
        worker_id="w1",
        rejected_at=utcnow(),
    )
    topic = "inspector/v1/osaka/l1/s1/request"
    with store.db.write() as s:
        _, created = record_rejection(s, msg, topic, payload, keep_bytes=1024)
        assert created
        _, created = record_rejection(s, msg, topic, payload, keep_bytes=1024)
        assert not created
    big = b"x" * 2048
    big_msg = msg.model_copy(update={"payload_sha256": sha256_hex(big)})
    with store.db.write() as s:
        record_rejection(s, big_msg, topic, big, keep_bytes=1024)
    with store.db.read() as s:
        rows = {r.payload_size: r for r in s.scalars(sa.select(Rejection))}
    assert rows[len(payload)].payload == payload
    assert rows[2048].payload is None and rows[2048].code == "payload.unsupported_schema"


def test_reviews_append_and_are_idempotent_by_review_id(store: Store) -> None:
    req = make_request()
    with store.db.write() as s:
        record_inspection(s, store.blobs, req)
        record_verdict(s, verdict_for(req))
    review = ReviewInput(
        review_id=uuid.uuid4(),
        request_id=req.request_id,
        decision="override",
        final_verdict="PASS",
        reviewer="suzuki",
        comment="mark is a reflection",
    )
    with store.db.write() as s:
        row, created = record_review(s, review)
        assert created and row.verdict_id is not None
        _, created = record_review(s, review)
        assert not created
    changed = dataclasses.replace(review, final_verdict="FAIL")
    with pytest.raises(ReviewConflict), store.db.write() as s:
        record_review(s, changed)
    second = dataclasses.replace(review, review_id=uuid.uuid4())
    with store.db.write() as s:
        record_review(s, second)
    with store.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Review)) == 2


def test_listing_filters_by_station_verdict_and_date(store: Store) -> None:
    now = utcnow()
    reqs = [
        make_request(station="s1", captured_at=now - timedelta(days=2)),
        make_request(station="s1", captured_at=now),
        make_request(station="s2", captured_at=now),
    ]
    with store.db.write() as s:
        for i, req in enumerate(reqs):
            record_inspection(s, store.blobs, req)
            record_verdict(s, verdict_for(req, verdict=Decision.PASS if i else Decision.FAIL))
    with store.db.read() as s:
        assert len(list_verdicts(s, VerdictFilter())) == 3
        assert len(list_verdicts(s, VerdictFilter(station="s1"))) == 2
        assert len(list_verdicts(s, VerdictFilter(verdict="FAIL"))) == 1
        recent = list_verdicts(s, VerdictFilter(since=now - timedelta(days=1)))
        assert {v.inspection.request_id for v in recent} == {str(r.request_id) for r in reqs[1:]}
        rows = list(iter_export(s, VerdictFilter(site="osaka"), chunk=2))
    assert len(rows) == 3 and rows[0]["captured_at"] >= rows[-1]["captured_at"]


def test_blob_paths_never_come_from_user_input(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    for bad in ("../../etc/passwd", "A" * 64, "/" + "a" * 63):
        with pytest.raises(ValueError):
            blobs.path_for(bad)
    sha, path = blobs.put(b"hello")
    assert path.is_relative_to(tmp_path) and path.name == sha
    assert not list(path.parent.glob(".tmp-*"))


def test_times_are_kept_in_utc_and_read_back_aware_whatever_zone_they_came_in(
    store: Store,
) -> None:
    tokyo = timezone(timedelta(hours=9))
    captured = datetime(2026, 11, 23, 17, 30, tzinfo=tokyo)
    req = make_request(captured_at=captured)
    with store.db.write() as s:
        record_inspection(s, store.blobs, req)
        record_verdict(s, verdict_for(req))
    with store.db.read() as s:
        insp = s.scalar(sa.select(Inspection))
        assert insp is not None
        assert insp.captured_at == captured and insp.captured_at.tzinfo is UTC
        assert insp.captured_at.hour == 8  # 17:30 in Tokyo is 08:30 UTC
        # A bound in another zone selects by the same instant.
        just_before = VerdictFilter(since=datetime(2026, 11, 23, 17, 29, tzinfo=tokyo))
        just_after = VerdictFilter(since=datetime(2026, 11, 23, 8, 31, tzinfo=UTC))
        assert len(list_verdicts(s, just_before)) == 1
        assert list_verdicts(s, just_after) == []
        # The UTC day the tallies and the calendar group by.
        day = s.scalar(sa.select(day_of(s, Inspection.captured_at)))
    assert day == "2026-11-23"
