"""The `inspector edge` commands: status, send, and clear configuration errors."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import typer
from typer.testing import CliRunner

from edge.spool import Spool, SpoolEntry
from inspector.cli import app
from inspector.protocol import StationKey, TopicKind, parse_request
from tests.fixtures.edge import BrokerObserver, jpeg_bytes

runner = CliRunner()


def _app() -> typer.Typer:
    return app


def _config(tmp_path: Path, unique: str, port: int = 1883) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f"""
[station]
site = "{unique}"
line = "l1"
station = "s1"
client_id = "edge-{unique}"
[broker]
port = {port}
session_expiry_s = 120
[spool]
path = "{tmp_path / "spool.db"}"
""")
    return path


def test_bad_config_exits_2_with_a_message_naming_field_and_file(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[station]\nsite = "a"\nline = "b"\nstation = "c"\n[spool]\nwindow = 0\n')
    result = runner.invoke(_app(), ["edge", "status", "--config", str(path)])
    assert result.exit_code == 2
    assert "configuration error" in result.output
    assert "spool.window" in result.output and str(path) in result.output.replace("\n", "")


def test_status_shows_queue_depth_and_the_oldest_age(tmp_path: Path, unique: str) -> None:
    config = _config(tmp_path, unique)
    assert runner.invoke(_app(), ["edge", "status", "--config", str(config)]).exit_code == 1
    spool = Spool(tmp_path / "spool.db")
    for age in (90.0, 30.0):
        spool.add(
            SpoolEntry(str(uuid.uuid4()), "p", "t", b"x" * 10, time.time() - age, (1, 1), (1, 1))
        )
    spool.close()
    result = runner.invoke(_app(), ["edge", "status", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["queue_depth"] == 2 and 89 <= data["oldest_age_s"] <= 120
    assert data["agent_running"] is False
    table = runner.invoke(_app(), ["edge", "status", "--config", str(config)])
    assert "queue depth" in table.output and "oldest unsent" in table.output


def test_status_shows_captures_awaiting_an_answer_re_sent_ones_and_the_oldest_unanswered(
    tmp_path: Path, unique: str
) -> None:
    config = _config(tmp_path, unique)
    spool = Spool(tmp_path / "spool.db")
    unsent, resent, answered = (
        SpoolEntry(str(uuid.uuid4()), f"p{age}", "t", b"x" * 10, time.time() - age, (1, 1), (1, 1))
        for age in (30.0, 90.0, 150.0)
    )
    for entry in (unsent, resent, answered):
        spool.add(entry)
    for _ in range(3):  # the first send and two re-sends, each acknowledged by the broker
        spool.mark_sent(resent.request_id, resend_at=time.time() + 60)
    spool.mark_sent(answered.request_id, resend_at=time.time() + 60)
    spool.record_outcome(answered.request_id, "PASS")
    spool.close()
    result = runner.invoke(_app(), ["edge", "status", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["queue_depth"], data["awaiting_verdict"], data["resent"]) == (1, 2, 1)
    assert 89 <= data["oldest_unanswered_age_s"] <= 120
    assert 29 <= data["oldest_age_s"] <= 60
    table = runner.invoke(_app(), ["edge", "status", "--config", str(config)]).output
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines()]
    rows = {c[0]: c[1] for c in cells if len(c) == 2}
    assert rows["awaiting verdict"] == "2" and rows["re-sent, still unanswered"] == "1"
    assert 89 <= int(rows["oldest unanswered"].removesuffix(" s")) < 120, rows
    assert 29 <= int(rows["oldest unsent"].removesuffix(" s")) < 60, rows


def test_send_publishes_photo_files_once_and_waits_for_the_pubacks(
    tmp_path: Path,
    unique: str,
    broker: tuple[str, int],
    observe: Callable[[str], BrokerObserver],
) -> None:
    config = _config(tmp_path, unique, broker[1])
    seen = observe(StationKey(unique, "l1", "s1").topic(TopicKind.REQUEST))
    photo = tmp_path / "P-31.jpg"
    photo.write_bytes(jpeg_bytes())
    result = runner.invoke(
        _app(),
        [
            "edge",
            "send",
            str(photo),
            "--config",
            str(config),
            "--no-verdicts",
            "--note",
            "scratch near hole 2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 capture(s) delivered" in result.output
    request = parse_request(seen.wait_for(1, 10)[0].payload)
    assert (request.part_id, request.note) == ("P-31", "scratch near hole 2")
