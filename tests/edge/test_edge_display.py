"""Verdicts at the station: shown large with the rationale, passed to the hook, timeouts flagged."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.display import Outcome, VerdictBoard, block_letters
from edge.spool import Spool, SpoolEntry
from inspector.protocol import (
    Decision,
    RejectionMessage,
    TopicKind,
    VerdictMessage,
    sha256_hex,
    utcnow,
)
from tests.fixtures.edge import BrokerObserver, screen


def _verdict(settings: EdgeSettings, request_id: str, part_id: str, decision: Decision) -> bytes:
    s = settings.station
    return VerdictMessage(
        request_id=uuid.UUID(request_id),
        site=s.site,
        line=s.line,
        station=s.station,
        part_id=part_id,
        verdict=decision,
        confidence=0.93,
        p_pass=0.07,
        rationale="deep scratch across the mounting face",
        model="phi4mm-tiny",
        adapter="base",
        prompt_version="v1",
        worker_id="w1",
        latency_ms=120.0,
        decided_at=utcnow(),
    ).to_payload()


def _delivered_capture(settings: EdgeSettings, part_id: str, sends: int = 1) -> str:
    """A capture the spool already delivered earlier, `sends` times (it never reaches a worker).

    Workers of other suites may share this broker and would answer a published request
    themselves; the board only needs a capture it knows about.
    """
    request_id = str(uuid.uuid4())
    spool = Spool(settings.spool.path)
    spool.add(
        SpoolEntry(
            request_id,
            part_id,
            settings.station.key.topic(TopicKind.REQUEST),
            b"{}",
            time.time(),
            (64, 48),
            (64, 48),
        )
    )
    for _ in range(sends):
        spool.mark_sent(request_id, resend_at=time.time() + 3600)
    spool.close()
    return request_id


class Outcomes:
    """Collects the board's outcomes and lets the test wait for them."""

    def __init__(self) -> None:
        self.items: list[Outcome] = []
        self._cond = threading.Condition()

    def __call__(self, outcome: Outcome) -> None:
        with self._cond:
            self.items.append(outcome)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[Outcome]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= count, timeout), self.items
            return list(self.items)


def test_with_panels_a_verdict_is_shown_large_with_rationale_and_given_to_the_hook(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    hook_out = tmp_path / "hook.json"
    script = tmp_path / "tower_light.py"
    script.write_text(
        "import sys, pathlib\npathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())\n"
    )
    hook = [sys.executable, str(script), str(hook_out)]
    settings = make_edge_settings(display={"hook": hook})
    request_id = _delivered_capture(settings, "P-77")
    worker = observe(settings.station.key.topic(TopicKind.VERDICT))
    outcomes = Outcomes()
    with EdgeAgent(settings, quiet_console, panels=True) as agent:
        agent.board.add_listener(outcomes)
        assert agent.transport.wait_subscribed(10)
        payload = _verdict(settings, request_id, "P-77", Decision.FAIL)
        worker.publish(settings.station.key.topic(TopicKind.VERDICT), payload)
        worker.publish(settings.station.key.topic(TopicKind.VERDICT), payload)  # redelivery
        got = outcomes.wait_for(2)
        assert agent.board.hook is not None and agent.board.hook.wait_idle(10)
        assert agent.stats().awaiting_verdict == 0
    assert [(o.kind, o.part_id, o.repeat) for o in got] == [
        ("FAIL", "P-77", False),
        ("FAIL", "P-77", True),
    ]
    shown = screen(quiet_console)
    assert " ".join(block_letters("FAIL").splitlines()[0].split()) in shown
    assert "deep scratch across the mounting face" in shown and "confidence 0.93" in shown
    assert json.loads(hook_out.read_bytes())["verdict"] == "FAIL"


def test_a_re_sent_capture_answered_twice_is_shown_once_marked_re_sent_and_hooked_once(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    runs = tmp_path / "hook-runs"
    script = tmp_path / "count.py"
    script.write_text("import sys\nopen(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')\n")
    settings = make_edge_settings(display={"hook": [sys.executable, str(script), str(runs)]})
    request_id = _delivered_capture(settings, "P-31", sends=3)  # re-sent twice
    worker = observe(settings.station.key.topic(TopicKind.VERDICT))
    outcomes = Outcomes()
    with EdgeAgent(settings, quiet_console) as agent:
        agent.board.add_listener(outcomes)
        assert agent.transport.wait_subscribed(10)
        payload = _verdict(settings, request_id, "P-31", Decision.PASS)
        # The original and a re-send both reached a worker: the stored verdict comes twice.
        for _ in range(2):
            worker.publish(settings.station.key.topic(TopicKind.VERDICT), payload)
        got = outcomes.wait_for(2)
        assert agent.board.hook is not None and agent.board.hook.wait_idle(10)
    assert [o.repeat for o in got] == [False, True]
    shown = screen(quiet_console)
    assert shown.count("confidence 0.93") == 1 and "re-sent (2)" in shown
    assert shown.count("repeat verdict PASS for part P-31") == 1
    assert len(runs.read_text().splitlines()) == 1


def test_rejection_is_shown_with_its_code(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    settings = make_edge_settings()
    request_id = _delivered_capture(settings, "P-9")
    worker = observe(settings.station.key.topic(TopicKind.REJECTED))
    outcomes = Outcomes()
    with EdgeAgent(settings, quiet_console) as agent:
        agent.board.add_listener(outcomes)
        assert agent.transport.wait_subscribed(10)
        s = settings.station
        rejection = RejectionMessage(
            request_id=uuid.UUID(request_id),
            site=s.site,
            line=s.line,
            station=s.station,
            code="image.too_small",
            message="photo is 8×8; send larger",
            payload_sha256=sha256_hex(b"{}"),
            worker_id="w1",
            rejected_at=utcnow(),
        )
        worker.publish(s.key.topic(TopicKind.REJECTED), rejection.to_payload())
        got = outcomes.wait_for(1)
    assert (got[0].kind, got[0].part_id) == ("REJECTED", "P-9")
    shown = screen(quiet_console)
    assert "image.too_small" in shown and "send larger" in shown


def test_capture_without_a_verdict_in_time_is_flagged_once(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    settings = make_edge_settings(display={"verdict_timeout_s": 0.5})
    request_id = _delivered_capture(settings, "P-5")
    worker = observe(settings.station.key.topic(TopicKind.VERDICT))
    outcomes = Outcomes()
    with EdgeAgent(settings, quiet_console) as agent:
        agent.board.add_listener(outcomes)
        assert agent.transport.wait_subscribed(10)
        flagged = outcomes.wait_for(1)
        assert agent.board.check_overdue() == []  # flagged once only
        # A verdict arriving late is still shown, marked as late.
        worker.publish(
            settings.station.key.topic(TopicKind.VERDICT),
            _verdict(settings, request_id, "P-5", Decision.PASS),
        )
        late = outcomes.wait_for(2)[1]
    assert (flagged[0].kind, flagged[0].request_id) == ("NO_VERDICT", request_id)
    assert late.kind == "PASS"
    shown = screen(quiet_console)
    assert "NO VERDICT" in shown and "no worker answered" in shown
    assert "arrived after the verdict timeout" in shown


def test_unreadable_verdict_messages_are_reported_not_fatal(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
) -> None:
    agent = EdgeAgent(make_edge_settings(), quiet_console)
    try:
        assert agent.board.handle_verdict(b"{not json") is None
        assert agent.board.handle_rejection(b'{"code": 1}') is None
    finally:
        agent.stop()
    assert "unreadable verdict ignored" in screen(quiet_console)


def test_model_text_cannot_restyle_or_spoof_the_station_screen(
    make_edge_settings: Callable[..., EdgeSettings], tmp_path: Path
) -> None:
    settings = make_edge_settings(display={"big": False})
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system="truecolor")
    spool = Spool(tmp_path / "board.sqlite")
    payload = json.loads(_verdict(settings, str(uuid.uuid4()), "P-1", Decision.PASS))
    payload["rationale"] = "fine [bold red on white]FAIL[/] \u202eLIAF\u202c \x1b]8;;https://x\x07l"
    payload["transcript"] = "note\x9b31m \u2028 [link=https://evil.example]x[/link]"
    board = VerdictBoard(console, spool, settings.display)
    try:
        assert board.handle_verdict(json.dumps(payload).encode()) is not None
        assert board.show_latest()  # the panel too
    finally:
        spool.close()
    shown = out.getvalue()
    for raw in ("\x1b]8", "\u202e", "\x9b", "\u2028"):
        assert raw not in shown, f"{raw!r} reached the screen"
    assert "[bold red on white]FAIL[/]" in shown, "markup in model text is shown, not applied"
    assert "\\u202eLIAF\\u202c" in shown, "a bidi override is spelled out"
    assert "[link=https://evil.example]x[/link]" in shown


def test_the_board_shows_fifteen_verdicts_on_fifteen_coloured_lines(
    make_edge_settings: Callable[..., EdgeSettings], tmp_path: Path
) -> None:
    settings = make_edge_settings()
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system="standard")
    spool = Spool(tmp_path / "board.sqlite")
    board = VerdictBoard(console, spool, settings.display)
    decisions = [Decision.PASS, Decision.FAIL, Decision.REVIEW] * 5
    try:
        for n, decision in enumerate(decisions):
            board.handle_verdict(_verdict(settings, str(uuid.uuid4()), f"P-{n:04}", decision))
        lines = out.getvalue().splitlines()
        assert len(lines) == 15, lines
        assert board.show_latest(), "the panel of the latest verdict, on request"
    finally:
        spool.close()
    for line, decision in zip(lines, decisions, strict=True):
        assert decision.value in line
        assert "\x1b[" in line, "coloured by verdict"
        assert "confidence 0.93" in line
    fail_line = lines[1]
    pass_line = lines[0]
    assert "41m" in fail_line and "42m" in pass_line, "red for FAIL, green for PASS"
    assert " ".join(block_letters("REVIEW").splitlines()[0].split()) in " ".join(
        out.getvalue().split()
    )
