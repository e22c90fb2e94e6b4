"""The `inspector` command as a user runs it: a real process, real files, a real database."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from inspector.protocol import Decision, VerdictMessage, utcnow
from inspector.store import Store, record_inspection, record_verdict
from tests.core.helpers import make_request


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inspector", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {}), "COLUMNS": "200"},
        cwd=cwd,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "inspector.toml"
    cfg.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\nblob_dir = "{tmp_path / "blobs"}"\n'
    )
    return cfg


def store_verdict(store: Store, station: str, part_id: str, decision: Decision, n: int) -> str:
    """One inspection with its verdict, as a worker stores them; its request_id."""
    req = make_request(station=station, part_id=part_id)
    with store.db.write() as s:
        record_inspection(s, store.blobs, req)
        record_verdict(
            s,
            VerdictMessage(
                request_id=req.request_id,
                site=req.site,
                line=req.line,
                station=station,
                part_id=req.part_id,
                verdict=decision,
                confidence=0.9,
                p_pass=0.9,
                rationale=f"reason, with comma {n}",
                defects=[{"type": "scratch"}] if decision is Decision.FAIL else [],
                model="tiny",
                adapter="vision",
                prompt_version="v1",
                worker_id="w",
                latency_ms=1.0,
                decided_at=utcnow(),
            ),
        )
    return str(req.request_id)


@pytest.fixture
def filled(config: Path, tmp_path: Path) -> list[str]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    store.upgrade()
    ids = [
        store_verdict(store, station, f"P-{i}", Decision.FAIL if i == 0 else Decision.PASS, i)
        for i, station in enumerate(["s1", "s1", "s2"])
    ]
    store.close()
    return ids


def test_help_lists_the_commands() -> None:
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("db", "schema", "verdicts"):
        assert cmd in out.stdout


def test_db_upgrade_is_idempotent(config: Path) -> None:
    from alembic.script import ScriptDirectory

    from inspector.store.database import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    for _ in range(2):
        out = run("--config", str(config), "db", "upgrade")
        assert out.returncode == 0, out.stderr
        assert f"revision {head}" in out.stdout


def test_schema_prints_valid_json_schema() -> None:
    out = run("schema")
    assert out.returncode == 0
    schemas = json.loads(out.stdout)
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    one = json.loads(run("schema", "verdict").stdout)
    assert "verdict" in one["properties"] and "rationale_state" in one["properties"]
    rationale = json.loads(run("schema", "rationale").stdout)
    assert rationale["properties"]["schema"]["const"] == "inspector.rationale/v1"
    assert rationale["properties"]["rationale_state"]["enum"] == [
        "produced",
        "skipped",
        "not_produced",
    ]
    bad = run("schema", "nonsense")
    assert bad.returncode == 2 and "unknown message" in bad.stderr


def test_bad_config_fails_with_the_field_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[broker]\nport = 0\n")
    out = run("--config", str(cfg), "db", "upgrade")
    assert out.returncode == 2
    assert "broker.port" in out.stderr and "bad.toml" in out.stderr


def test_verdicts_list_filters(config: Path, filled: list[str]) -> None:
    out = run("--config", str(config), "verdicts", "list", "--station", "s1")
    assert out.returncode == 0, out.stderr
    assert "2 verdict(s)" in out.stderr and filled[0] in out.stdout and filled[2] not in out.stdout
    fails = run("--config", str(config), "verdicts", "list", "--verdict", "fail")
    assert "1 verdict(s)" in fails.stderr


def test_verdicts_show(config: Path, filled: list[str]) -> None:
    out = run("--config", str(config), "verdicts", "show", filled[0])
    assert out.returncode == 0 and '"FAIL"' in out.stdout
    missing = run(
        "--config", str(config), "verdicts", "show", "00000000-0000-0000-0000-000000000000"
    )
    assert missing.returncode == 1 and "no inspection" in missing.stderr
    bad = run("--config", str(config), "verdicts", "show", "nope")
    assert bad.returncode == 1 and "part id 'nope'" in bad.stderr


def test_verdicts_export_csv_and_jsonl(config: Path, filled: list[str], tmp_path: Path) -> None:
    out = run("--config", str(config), "verdicts", "export", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {r["request_id"] for r in rows} == set(filled)
    assert any(r["defects"] == "scratch" for r in rows)
    assert any(r["rationale"] == "reason, with comma 0" for r in rows)
    # Verdicts stored with their rationale (as before verdict first) read as produced.
    assert {r["rationale_state"] for r in rows} == {"produced"}
    target = tmp_path / "out.jsonl"
    out = run(
        "--config",
        str(config),
        "verdicts",
        "export",
        "--format",
        "jsonl",
        "--verdict",
        "PASS",
        "-o",
        str(target),
    )
    assert out.returncode == 0 and "exported 2" in out.stderr
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert {r["verdict"] for r in records} == {"PASS"} and len(records) == 2
    assert {r["rationale_state"] for r in records} == {"produced"}


def test_export_refuses_bad_arguments(config: Path) -> None:
    fmt = run("--config", str(config), "verdicts", "export", "--format", "xml")
    assert fmt.returncode == 2 and "csv or jsonl" in fmt.stderr
    date = run("--config", str(config), "verdicts", "export", "--since", "last week")
    assert date.returncode == 2 and "ISO date" in date.stderr


HOSTILE_PART = "P-\u202eLIAF\u202c[/][link=https://evil.example]x[/link]\x9b31m"
HOSTILE_TEXT = "ok\u2028[bold red on white]FAIL\x1b]8;;https://evil.example\x07click\x85"


@pytest.fixture
def hostile(config: Path, filled: list[str], tmp_path: Path) -> str:
    """The first stored inspection, its part id, note and rationale rewritten to hostile text.

    Rows written before today's intake rules, or by another writer, can hold anything.
    """
    import sqlite3

    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        db.execute(
            "UPDATE inspections SET part_id = ?, note = ? WHERE request_id = ?",
            (HOSTILE_PART, HOSTILE_TEXT, filled[0]),
        )
        db.execute(
            "UPDATE verdicts SET rationale = ?, transcript = ? WHERE inspection_id = "
            "(SELECT id FROM inspections WHERE request_id = ?)",
            (HOSTILE_TEXT, HOSTILE_TEXT, filled[0]),
        )
    return filled[0]


def _unsafe(text: str) -> list[str]:
    from inspector.safetext import first_unsafe

    return [ch for ch in text if first_unsafe(ch, allow="\n") is not None]


def test_hostile_stored_text_is_shown_literally_by_list_and_show(
    config: Path, hostile: str
) -> None:
    out = run("--config", str(config), "verdicts", "list")
    assert out.returncode == 0, out.stderr
    assert _unsafe(out.stdout) == [] and "3 verdict(s)" in out.stderr
    assert "P-\\u202eLIAF\\u202c[/][link=https://evil.example]x[/link]" in out.stdout
    assert "P-FAIL" not in out.stdout
    shown = run("--config", str(config), "verdicts", "show", hostile)
    assert shown.returncode == 0, shown.stderr
    assert _unsafe(shown.stdout) == []
    assert "[bold red on white]FAIL" in shown.stdout and "\\u2028" in shown.stdout
    body = shown.stdout[shown.stdout.index("{") :]
    assert json.loads(body)["rationale"] == HOSTILE_TEXT, "the JSON is exact data"


def test_hostile_stored_text_is_exported_inert(config: Path, hostile: str) -> None:
    out = run("--config", str(config), "verdicts", "export", "--format", "csv", "--station", "s1")
    assert out.returncode == 0, out.stderr
    assert _unsafe(out.stdout) == []
    rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert rows[hostile]["part_id"].startswith("P-\\u202e")
    jsonl = run("--config", str(config), "verdicts", "export", "--format", "jsonl")
    assert _unsafe(jsonl.stdout) == []
    records = {r["request_id"]: r for r in map(json.loads, jsonl.stdout.splitlines())}
    assert records[hostile]["part_id"] == HOSTILE_PART


def test_verdicts_list_pages_by_cursor_stable_while_verdicts_arrive(
    config: Path, filled: list[str], tmp_path: Path
) -> None:
    first = run("--config", str(config), "verdicts", "list", "--limit", "2")
    assert first.returncode == 0, first.stderr
    assert "2 verdict(s)" in first.stderr
    cursor = first.stderr.split("more: --after ")[1].split()[0]
    # A newer verdict arrives between pages: it belongs before page one, not on page two.
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    late = store_verdict(store, "s1", "P-new", Decision.PASS, 9)
    store.close()
    second = run("--config", str(config), "verdicts", "list", "--limit", "2", "--after", cursor)
    assert second.returncode == 0, second.stderr
    assert "1 verdict(s)" in second.stderr and "more:" not in second.stderr
    pages = first.stdout + second.stdout
    assert all(pages.count(rid) == 1 for rid in filled), "every verdict once across the pages"
    assert late not in pages
    bad = run("--config", str(config), "verdicts", "list", "--after", "yesterday")
    assert bad.returncode == 2 and "cursor" in bad.stderr
