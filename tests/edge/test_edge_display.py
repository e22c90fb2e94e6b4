"""Verdicts at the station: shown large with the rationale, passed to the hook, timeouts flagged.

Verdict first: the verdict is shown the moment it arrives ("rationale follows…") and its
rationale, published later on the station's rationale topic, follows once.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from rich.console import Console

from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.display import Outcome, RationaleOutcome, VerdictBoard, block_letters
from edge.spool import Spool, SpoolEntry
from inspector.protocol import (
    Decision,
    DefectFinding,
    RationaleMessage,
    RationaleState,
    RejectionMessage,
    TopicKind,
    VerdictMessage,
    sha256_hex,
    utcnow,
)
from tests.fixtures.edge import BrokerObserver, screen

RATIONALE = "deep scratch across the mounting face"


def _verdict(
    settings: EdgeSettings,
    request_id: str,
    part_id: str,
    decision: Decision,
    state: RationaleState = RationaleState.PRODUCED,
) -> bytes:
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
        rationale=RATIONALE if state is RationaleState.PRODUCED else "",
        rationale_state=state,
        model="phi4mm-tiny",
        adapter="base",
        prompt_version="v1",
        worker_id="w1",
        latency_ms=120.0,
        decided_at=utcnow(),
    ).to_payload()


def _rationale(
    settings: EdgeSettings,
    request_id: str,
    part_id: str,
    state: RationaleState = RationaleState.PRODUCED,
    **fields: object,
) -> bytes:
    """The rationale message a worker publishes after the decode (or after giving up on it)."""
    s = settings.station
    values: dict[str, object] = {
        "rationale": RATIONALE if state is RationaleState.PRODUCED else "",
        "reason": "rationale.worker_lost" if state is RationaleState.NOT_PRODUCED else None,
        **fields,
    }
    return RationaleMessage.model_validate(
        {
            "request_id": request_id,
            "site": s.site,
            "line": s.line,
            "station": s.station,
            "part_id": part_id,
            "rationale_state": state,
            "worker_id": "w1",
            "written_at": utcnow(),
            **values,
        }
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


T = TypeVar("T", Outcome, RationaleOutcome)


class Outcomes(Generic[T]):
    """Collects the board's outcomes (or rationale outcomes) and lets the test wait for them."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._cond = threading.Condition()

    def __call__(self, outcome: T) -> None:
        with self._cond:
            self.items.append(outcome)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[T]:
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
    outcomes = Outcomes[Outcome]()
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
    outcomes = Outcomes[Outcome]()
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
    outcomes = Outcomes[Outcome]()
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
    outcomes = Outcomes[Outcome]()
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


def test_a_verdict_is_shown_at_once_and_its_rationale_follows_on_its_own_line_once(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    runs = tmp_path / "hook-runs"
    script = tmp_path / "count.py"
    script.write_text("import sys\nopen(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')\n")
    settings = make_edge_settings(display={"hook": [sys.executable, str(script), str(runs)]})
    request_id = _delivered_capture(settings, "P-40")
    worker = observe(settings.station.key.topic(TopicKind.VERDICT))
    outcomes = Outcomes[Outcome]()
    rationales = Outcomes[RationaleOutcome]()
    with EdgeAgent(settings, quiet_console) as agent:
        agent.board.add_listener(outcomes)
        agent.board.add_rationale_listener(rationales)
        assert agent.transport.wait_subscribed(10)
        worker.publish(
            settings.station.key.topic(TopicKind.VERDICT),
            _verdict(settings, request_id, "P-40", Decision.FAIL, RationaleState.PENDING),
        )
        outcomes.wait_for(1)
        verdict_only = screen(quiet_console)
        assert agent.stats().awaiting_verdict == 0, "the verdict is the answer"
        rationale = _rationale(
            settings,
            request_id,
            "P-40",
            defects=[DefectFinding(type="scratch", where="mounting face")],
            transcript="scratch near the hole",
        )
        for _ in range(2):  # the second one is a redelivery
            worker.publish(settings.station.key.topic(TopicKind.RATIONALE), rationale)
        got = rationales.wait_for(2)
        assert agent.board.hook is not None and agent.board.hook.wait_idle(10)
        assert agent.board.show_latest()
    assert "FAIL" in verdict_only and "part P-40" in verdict_only
    assert "rationale follows…" in verdict_only and RATIONALE not in verdict_only
    assert [(r.state, r.part_id, r.repeat) for r in got] == [
        ("produced", "P-40", False),
        ("produced", "P-40", True),
    ]
    lines = [line for line in quiet_console.export_text(clear=False).splitlines() if "P-40" in line]
    assert "rationale follows…" in lines[0]
    assert "↳ part P-40 FAIL" in lines[1] and RATIONALE in lines[1]
    assert "scratch (mounting face)" in lines[1]
    shown = screen(quiet_console)
    assert shown.count(RATIONALE) == 2, "the rationale line once, then the panel asked for"
    assert "voice note: scratch near the hole" in shown, "the latest panel has the transcript"
    assert len(outcomes.items) == 1, "a rationale is no second answer"
    assert len(runs.read_text().splitlines()) == 1, "the hook runs for the verdict only"


def test_a_pass_whose_voice_note_reports_a_defect_is_marked_on_the_board_without_a_rationale(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
) -> None:
    # fail_and_review decodes no rationale for a PASS; the transcript heard afterwards still
    # says "scratch", and that is the one thing the operator must see.
    settings = make_edge_settings()
    request_id = _delivered_capture(settings, "P-41")
    worker = observe(settings.station.key.topic(TopicKind.VERDICT))
    rationales = Outcomes[RationaleOutcome]()
    with EdgeAgent(settings, quiet_console) as agent:
        agent.board.add_rationale_listener(rationales)
        assert agent.transport.wait_subscribed(10)
        worker.publish(
            settings.station.key.topic(TopicKind.VERDICT),
            _verdict(settings, request_id, "P-41", Decision.PASS, RationaleState.PENDING),
        )
        worker.publish(
            settings.station.key.topic(TopicKind.RATIONALE),
            _rationale(
                settings,
                request_id,
                "P-41",
                RationaleState.SKIPPED,
                transcript="deep scratch on the flange",
                note_disagrees=True,
            ),
        )
        rationales.wait_for(1)
    lines = [line for line in quiet_console.export_text(clear=False).splitlines() if "P-41" in line]
    assert len(lines) == 2 and "↳ part P-41 PASS" in lines[1]
    assert "note disagrees" in lines[1]


def test_with_panels_the_rationale_follows_or_says_why_there_is_none(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
) -> None:
    settings = make_edge_settings()
    failed = _delivered_capture(settings, "P-41")
    lost = _delivered_capture(settings, "P-42")
    passed = _delivered_capture(settings, "P-43")
    worker = observe(settings.station.key.topic(TopicKind.VERDICT))
    outcomes = Outcomes[Outcome]()
    rationales = Outcomes[RationaleOutcome]()
    topic = settings.station.key.topic
    with EdgeAgent(settings, quiet_console, panels=True) as agent:
        agent.board.add_listener(outcomes)
        agent.board.add_rationale_listener(rationales)
        assert agent.transport.wait_subscribed(10)
        for rid, part, word in ((failed, "P-41", Decision.FAIL), (lost, "P-42", Decision.PASS)):
            worker.publish(
                topic(TopicKind.VERDICT),
                _verdict(settings, rid, part, word, RationaleState.PENDING),
            )
        # The site's policy asks no rationale for a PASS, and no voice note came with it.
        worker.publish(
            topic(TopicKind.VERDICT),
            _verdict(settings, passed, "P-43", Decision.PASS, RationaleState.SKIPPED),
        )
        outcomes.wait_for(3)
        worker.publish(
            topic(TopicKind.RATIONALE),
            _rationale(
                settings,
                failed,
                "P-41",
                defects=[DefectFinding(type="dent")],
                transcript="dent on the rim",
            ),
        )
        worker.publish(
            topic(TopicKind.RATIONALE),
            _rationale(settings, lost, "P-42", RationaleState.NOT_PRODUCED),
        )
        got = rationales.wait_for(2)
    assert [(r.part_id, r.state) for r in got] == [
        ("P-41", "produced"),
        ("P-42", "not_produced"),
    ]
    shown = screen(quiet_console)
    assert shown.count("rationale follows…") == 2
    assert "rationale for part P-41 FAIL" in shown and RATIONALE in shown
    assert "defects: dent" in shown and "voice note: dent on the rim" in shown
    assert "rationale for part P-42 PASS" in shown
    assert "no rationale: the worker stopped before writing it" in shown
    assert "P-43" in shown and "rationale for part P-43" not in shown


def test_a_rationale_is_shown_once_whatever_order_or_capture_it_comes_with(
    make_edge_settings: Callable[..., EdgeSettings], quiet_console: Console, tmp_path: Path
) -> None:
    settings = make_edge_settings()
    spool = Spool(tmp_path / "board.sqlite")
    board = VerdictBoard(quiet_console, spool, settings.display)
    overtaken, unknown, unpublished, slow = (str(uuid.uuid4()) for _ in range(4))
    for rid, part in ((overtaken, "P-50"), (unpublished, "P-52"), (slow, "P-53")):
        spool.add(SpoolEntry(rid, part, "t", b"{}", time.time(), (64, 48), (64, 48)))
    try:
        # A rationale that overtook its verdict is shown with the verdict, not before it.
        board.handle_rationale(_rationale(settings, overtaken, "P-50"))
        assert "P-50" not in screen(quiet_console)
        board.handle_verdict(
            _verdict(settings, overtaken, "P-50", Decision.FAIL, RationaleState.PENDING)
        )
        # A rationale for a capture this station does not remember: shown once.
        for _ in range(2):
            board.handle_rationale(_rationale(settings, unknown, "P-51", transcript="x"))
        # A verdict whose rationale message never came (its worker stopped right after
        # writing it): the stored verdict, re-published to a re-send, brings it instead.
        board.handle_verdict(
            _verdict(settings, unpublished, "P-52", Decision.REVIEW, RationaleState.PENDING)
        )
        board.handle_verdict(_verdict(settings, unpublished, "P-52", Decision.REVIEW))
        board.handle_rationale(_rationale(settings, unpublished, "P-52"))
        # A worker only slow, not dead: marked not produced, then its rationale comes after all.
        board.handle_verdict(
            _verdict(settings, slow, "P-53", Decision.FAIL, RationaleState.PENDING)
        )
        board.handle_rationale(_rationale(settings, slow, "P-53", RationaleState.NOT_PRODUCED))
        for _ in range(2):
            board.handle_rationale(_rationale(settings, slow, "P-53"))
    finally:
        spool.close()
    lines = quiet_console.export_text(clear=False).splitlines()
    p50 = [line for line in lines if "P-50" in line]
    assert len(p50) == 1 and RATIONALE in p50[0] and "rationale follows" not in p50[0]
    p51 = [line for line in lines if "P-51" in line]
    assert len(p51) == 1 and "↳ part P-51" in p51[0] and RATIONALE in p51[0]
    p52 = [line for line in lines if "P-52" in line]
    assert "rationale follows…" in p52[0] and "repeat verdict REVIEW" in p52[1]
    assert sum(RATIONALE in line for line in p52) == 1 and "↳ part P-52 REVIEW" in p52[2]
    p53 = [line for line in lines if "P-53" in line]
    assert len(p53) == 3 and "no rationale: the worker stopped before writing it" in p53[1]
    assert RATIONALE in p53[2]


def test_unreadable_rationale_messages_are_reported_not_fatal(
    make_edge_settings: Callable[..., EdgeSettings], quiet_console: Console, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "board.sqlite")
    board = VerdictBoard(quiet_console, spool, make_edge_settings().display)
    try:
        assert board.handle_rationale(b"{not json") is None
        # A rationale cannot be pending: only a verdict says that.
        pending = {"schema": "inspector.rationale/v1", "rationale_state": "pending"}
        assert board.handle_rationale(json.dumps(pending).encode()) is None
    finally:
        spool.close()
    assert screen(quiet_console).count("unreadable rationale ignored") == 2


def test_rationale_text_cannot_restyle_or_spoof_the_station_screen(
    make_edge_settings: Callable[..., EdgeSettings], tmp_path: Path
) -> None:
    settings = make_edge_settings(display={"big": False})
    spool = Spool(tmp_path / "board.sqlite")
    unsafe = {
        "rationale": "fine [bold red on white]FAIL[/] \u202eLIAF\u202c \x1b]8;;https://x\x07l",
        "transcript": "note\x9b31m \u2028 [link=https://evil.example]x[/link]",
        "defects": [{"type": "dent", "where": "rim\x1b[2J [blink]now[/]"}],
    }
    try:
        for panels in (False, True):
            out = io.StringIO()
            console = Console(file=out, width=200, force_terminal=True, color_system="truecolor")
            board = VerdictBoard(console, spool, settings.display, panels=panels)
            rid = str(uuid.uuid4())
            board.handle_verdict(
                _verdict(settings, rid, "P-1", Decision.PASS, RationaleState.PENDING)
            )
            payload = json.loads(_rationale(settings, rid, "P-1"))
            board.handle_rationale(json.dumps({**payload, **unsafe}).encode())
            assert board.show_latest()
            shown = out.getvalue()
            for raw in ("\x1b]8", "\x1b[2J", "\u202e", "\x9b", "\u2028"):
                assert raw not in shown, f"{raw!r} reached the screen (panels={panels})"
            assert "[bold red on white]FAIL[/]" in shown, "markup is shown, not applied"
            assert "\\u202eLIAF\\u202c" in shown, "a bidi override is spelled out"
            assert "[blink]now[/]" in shown
    finally:
        spool.close()
