"""Output for machines and people: `--json` parses through a pipe at 80 columns, ids are whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from inspector.protocol import Decision, VerdictMessage, utcnow
from inspector.store import Store, record_inspection, record_verdict
from tests.core.helpers import make_request

LONG_RATIONALE = "a long rationale, " * 30  # 540 characters: rich would wrap it at 80


def piped(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`inspector --config CONFIG ARGS | …`: stdout and stderr are pipes, COLUMNS=80."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "inspector", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "COLUMNS": "80"},
        check=False,
    )


def _store_one(store: Store, request_id: uuid.UUID, part_id: str, decision: Decision) -> None:
    req = make_request(request_id=request_id, part_id=part_id)
    with store.db.write() as s:
        record_inspection(s, store.blobs, req)
        record_verdict(
            s,
            VerdictMessage(
                request_id=req.request_id,
                site=req.site,
                line=req.line,
                station=req.station,
                part_id=req.part_id,
                verdict=decision,
                confidence=0.9,
                p_pass=0.9 if decision is Decision.PASS else 0.1,
                rationale=LONG_RATIONALE,
                model="tiny",
                adapter="vision",
                prompt_version="v1",
                worker_id="w",
                latency_ms=1.0,
                decided_at=utcnow(),
            ),
        )


IDS = [
    uuid.UUID("abcdef01-0000-4000-8000-000000000001"),
    uuid.UUID("abcdef01-0000-4000-8000-000000000002"),
    uuid.UUID("12345678-0000-4000-8000-000000000003"),
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "inspector.toml"
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cfg.write_text(f'[store]\nurl = "{url}"\nblob_dir = "{tmp_path / "blobs"}"\n')
    store = Store(url, tmp_path / "blobs")
    store.upgrade()
    try:
        # The same part twice (its second inspection is the latest), and another part.
        _store_one(store, IDS[0], "P-TWICE", Decision.FAIL)
        _store_one(store, IDS[1], "P-TWICE", Decision.PASS)
        _store_one(store, IDS[2], "P-ONCE", Decision.REVIEW)
    finally:
        store.close()
    return cfg


def test_verdicts_list_json_is_one_parseable_record_per_line_through_a_pipe(config: Path) -> None:
    out = piped(config, "verdicts", "list", "--json")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["request_id"] for r in records} == {str(i) for i in IDS}
    assert all(r["rationale"] == LONG_RATIONALE for r in records), "never wrapped"
    assert all(r["captured_at"].endswith("+00:00") for r in records)
    assert "\x1b" not in out.stdout, "never coloured"
    assert "3 verdict(s)" in out.stderr, "counts go to stderr"


def test_verdicts_list_prints_whole_request_ids_at_80_columns(config: Path) -> None:
    out = piped(config, "verdicts", "list")
    assert out.returncode == 0, out.stderr
    for rid in IDS:
        assert str(rid) in out.stdout
    assert "UTC" in out.stdout, "times show their zone"


def test_verdicts_show_json_is_one_document_through_a_pipe(config: Path) -> None:
    out = piped(config, "verdicts", "show", str(IDS[2]), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["request_id"] == str(IDS[2]) and doc["part_id"] == "P-ONCE"
    assert [v["verdict"] for v in doc["verdicts"]] == ["REVIEW"]
    assert doc["verdicts"][0]["rationale"] == LONG_RATIONALE


def test_verdicts_show_without_json_keeps_stdout_json_and_the_header_on_stderr(
    config: Path,
) -> None:
    out = piped(config, "verdicts", "show", str(IDS[2]))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["verdict"] == "REVIEW"
    assert "P-ONCE" in out.stderr and "UTC" in out.stderr, "the header, with the time's zone"


def test_verdicts_show_takes_a_unique_prefix_and_names_an_ambiguous_one(config: Path) -> None:
    out = piped(config, "verdicts", "show", "1234", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["request_id"] == str(IDS[2])
    ambiguous = piped(config, "verdicts", "show", "abcdef01")
    assert ambiguous.returncode == 2
    assert "ambiguous" in ambiguous.stderr
    assert str(IDS[0]) in ambiguous.stderr and str(IDS[1]) in ambiguous.stderr
    assert ambiguous.stdout == ""


def test_verdicts_show_takes_a_part_id_and_shows_its_latest_inspection(config: Path) -> None:
    out = piped(config, "verdicts", "show", "P-TWICE", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["request_id"] == str(IDS[1])
    assert "inspected 2 times" in out.stderr and str(IDS[0]) in out.stderr
    missing = piped(config, "verdicts", "show", "P-NEVER")
    assert missing.returncode == 1 and "no inspection" in missing.stderr


def test_codes_json_parses_through_a_pipe(config: Path) -> None:
    codes = piped(config, "codes", "--json")
    assert codes.returncode == 0
    assert len([json.loads(line) for line in codes.stdout.splitlines()]) > 40
    one = piped(config, "codes", "image.too_small", "--json")
    assert json.loads(one.stdout)["code"] == "image.too_small"
