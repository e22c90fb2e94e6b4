"""The registry: candidates are promoted only when they let no more defects escape."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspector.cli import app
from inspector.errors import Code, RegistryRefused
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import adapter_control_topic, parse_adapter_announcement
from inspector.quality import Outcome
from inspector.settings import BrokerSettings, SiteProfile
from inspector.store import Store
from inspector.store.adapters import (
    AdapterRecord,
    AdapterStatus,
    active_adapter,
    audit_trail,
    find_adapter,
    record_metrics,
    register_adapter,
)
from inspector.store.datasets import SnapshotRecord
from inspector.train.evaluate import compare
from inspector.train.registry import promote, retire, rollback

# A holdout of 4 PASS and 4 FAIL parts; each list is P(PASS) of the FAIL parts.
SNAPSHOT = SnapshotRecord(1, "site", "0" * 64, None, None, 0.25, {}, "qe", None, ())  # type: ignore[arg-type]


def _scored(fail_p_pass: list[float]) -> list[Outcome]:
    return [Outcome("PASS", 0.9)] * 4 + [Outcome("FAIL", p) for p in fail_p_pass]


def _candidate(store: Store, site: str, fail_p_pass: list[float], against: list[float]) -> str:
    """Register a candidate evaluated against what the site serves now."""
    with store.db.write() as session:
        row = register_adapter(
            session,
            site=site,
            name=site,
            path=f"{site}/next/adapter.safetensors",
            sha256="a" * 64,
            base_model="b" * 64,
            actor="trainer",
        )
        active = active_adapter(session, site)
        evaluation = compare(
            _scored(fail_p_pass),
            _scored(against),
            SiteProfile(threshold=0.7),
            row.ref,
            active,
            SNAPSHOT,
        )
        record_metrics(session, row.ref, {"eval": evaluation.model_dump(mode="json")}, "trainer")
    return row.ref


def _get(store: Store, ref: str) -> AdapterRecord:
    with store.db.read() as session:
        return find_adapter(session, ref)


def test_promote_rollback_and_the_audit_trail(store: Store, unique: str) -> None:
    base_escapes = [0.9, 0.9, 0.1, 0.1]  # the base model passes 2 of 4 FAIL parts
    v1 = _candidate(store, unique, [0.1, 0.1, 0.1, 0.9], base_escapes)
    change = promote(store, v1, "qe-lead")
    assert change.active is not None and change.active.ref == f"{unique}@1"
    assert change.replaced is None

    v2 = _candidate(store, unique, [0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.9])
    promote(store, v2, "qe-lead", reason="fewer escapes")
    assert _get(store, v1).status is AdapterStatus.RETIRED
    assert _get(store, v2).status is AdapterStatus.ACTIVE

    back = rollback(store, unique, "qe-lead", reason="line reports false rejects")
    assert back.active is not None and back.active.ref == v1
    assert _get(store, v2).status is AdapterStatus.RETIRED
    # Rolling back again leaves the site on the base model.
    assert rollback(store, unique, "qe-lead").active is None
    with store.db.read() as session:
        assert active_adapter(session, unique) is None
        trail = audit_trail(session, site=unique)
    assert [(a.adapter, a.action, a.to_status) for a in trail] == [
        (v1, "register", "candidate"),
        (v1, "evaluate", "candidate"),
        (v1, "promote", "active"),
        (v2, "register", "candidate"),
        (v2, "evaluate", "candidate"),
        (v1, "superseded", "retired"),
        (v2, "promote", "active"),
        (v2, "rollback", "retired"),
        (v1, "restore", "active"),
        (v1, "rollback", "retired"),
    ]
    promoted = trail[6]
    assert promoted.actor == "qe-lead" and promoted.reason == "fewer escapes"
    assert promoted.metrics["eval"]["candidate"]["escapes_per_defective_part"] == 0.0
    assert trail[7].reason == "line reports false rejects"


def test_a_worse_candidate_is_refused_and_force_records_the_reason(
    store: Store, unique: str
) -> None:
    v1 = _candidate(store, unique, [0.1, 0.1, 0.1, 0.1], [0.9, 0.9, 0.9, 0.9])
    promote(store, v1, "qe-lead")
    worse = _candidate(store, unique, [0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1])
    with pytest.raises(RegistryRefused) as info:
        promote(store, worse, "qe-lead")
    assert info.value.code is Code.ADAPTER_PROMOTION_REFUSED
    assert "lets 25.0 % of the defective parts pass" in info.value.message
    assert f"{unique}@1 0.0 %" in info.value.message
    assert _get(store, worse).status is AdapterStatus.CANDIDATE

    with pytest.raises(RegistryRefused, match="--force needs --reason"):
        promote(store, worse, "qe-lead", force=True)
    promote(store, worse, "qe-lead", force=True, reason="new camera; old adapter blind to it")
    with store.db.read() as session:
        last = audit_trail(session, ref=worse)[-1]
    assert (last.action, last.forced, last.actor) == ("promote", True, "qe-lead")
    assert last.reason == "new camera; old adapter blind to it"


def test_a_candidate_must_be_evaluated_against_what_serves_now(store: Store, unique: str) -> None:
    v1 = _candidate(store, unique, [0.1] * 4, [0.9] * 4)
    v2 = _candidate(store, unique, [0.1] * 4, [0.9] * 4)  # also judged against the base
    promote(store, v1, "qe-lead")
    with pytest.raises(RegistryRefused, match=r"evaluated against base.*serves now|serves"):
        promote(store, v2, "qe-lead")
    with store.db.write() as session:
        fresh = register_adapter(
            session,
            site=unique,
            name=unique,
            path="x",
            sha256="c" * 64,
            base_model="b" * 64,
            actor="t",
        )
    with pytest.raises(RegistryRefused, match="has no evaluation"):
        promote(store, fresh.ref, "qe-lead")


def test_retire_a_candidate_but_not_the_active_one(store: Store, unique: str) -> None:
    v1 = _candidate(store, unique, [0.1] * 4, [0.9] * 4)
    v2 = _candidate(store, unique, [0.1] * 4, [0.9] * 4)
    promote(store, v1, "qe-lead")
    assert retire(store, v2, "qe-lead", "superseded by a retrain").status is AdapterStatus.RETIRED
    with pytest.raises(RegistryRefused, match="use `inspector adapters rollback"):
        retire(store, v1, "qe-lead")
    with pytest.raises(RegistryRefused) as info:
        promote(store, "nope@3", "qe-lead")
    assert info.value.code is Code.ADAPTER_NOT_FOUND


def test_a_name_belongs_to_one_site(store: Store, unique: str) -> None:
    _candidate(store, unique, [0.1] * 4, [0.9] * 4)
    with pytest.raises(RegistryRefused, match="already belongs to site"), store.db.write() as s:
        register_adapter(
            s,
            site="elsewhere",
            name=unique,
            path="x",
            sha256="c" * 64,
            base_model="b" * 64,
            actor="t",
        )


def test_cli_promote_announces_on_the_retained_control_topic(
    sqlite_url: str, tmp_path: Path, broker: tuple[str, int], unique: str
) -> None:
    store = Store(sqlite_url, tmp_path / "blobs")
    store.upgrade()
    v1 = _candidate(store, unique, [0.1] * 4, [0.9] * 4)
    env = {
        "INSPECTOR_STORE__URL": sqlite_url,
        "INSPECTOR_STORE__BLOB_DIR": str(tmp_path / "blobs"),
        "INSPECTOR_BROKER__HOST": broker[0],
        "INSPECTOR_BROKER__PORT": str(broker[1]),
    }
    runner = CliRunner()
    result = runner.invoke(app, ["adapters", "promote", v1, "--by", "qe-lead"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{v1} is active" in result.output

    got: queue.Queue[Message] = queue.Queue()
    watcher = MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"w-{unique}", clean_start=True
    )
    watcher.subscribe(adapter_control_topic(unique), got.put, qos=1)
    with watcher:
        message = got.get(timeout=10)  # retained: arrives although published before
    announced = parse_adapter_announcement(message.payload, message.topic)
    assert (announced.name, announced.version, announced.sha256) == (unique, 1, "a" * 64)

    worse = _candidate(store, unique, [0.9] * 4, [0.1] * 4)
    store.close()
    result = runner.invoke(app, ["adapters", "promote", worse], env=env)
    assert result.exit_code == 1 and "promotion refused" in result.output
    result = runner.invoke(app, ["adapters", "list", "--site", unique, "--json"], env=env)
    listed = {row["adapter"]: row["status"] for row in map(json.loads, result.stdout.splitlines())}
    assert listed == {v1: "active", worse: "candidate"}
    result = runner.invoke(app, ["adapters", "show", v1], env=env)
    assert result.exit_code == 0 and '"action": "promote"' in result.output

    result = runner.invoke(
        app, ["adapters", "rollback", "--site", unique, "--reason", "x"], env=env
    )
    assert result.exit_code == 0, result.output
    got = queue.Queue()
    watcher = MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"w2-{unique}", clean_start=True
    )
    watcher.subscribe(adapter_control_topic(unique), got.put, qos=1)
    with watcher:
        message = got.get(timeout=10)
    cleared = parse_adapter_announcement(message.payload, message.topic)
    assert cleared.name is None and cleared.version is None  # back on the base model
    # Leave no retained message behind on the shared broker.
    with MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"c-{unique}", clean_start=True
    ) as cleaner:
        assert cleaner.wait_connected(10)
        cleaner.publish_and_wait(adapter_control_topic(unique), b"", 10, retain=True)


def test_upgrade_keeps_adapter_rows_written_before_the_registry(db_url: str) -> None:
    from alembic import command

    from inspector.store.database import alembic_config, create_engine

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(db_url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.exec_driver_sql(
                "INSERT INTO adapters (site, version, path, status, metrics, created_at, "
                "updated_at) VALUES ('osaka', 1, 'osaka', 'active', '{}', "
                "'2026-11-01 00:00:00', '2026-11-01 00:00:00')"
            )
    finally:
        engine.dispose()
    store = Store(db_url, Path("unused"))
    try:
        store.upgrade()
        with store.db.read() as session:
            kept = active_adapter(session, "osaka")
        assert kept is not None and (kept.name, kept.version, kept.sha256) == ("osaka", 1, "")
    finally:
        store.close()
