"""Triggers: HTTP POST on localhost and the station's MQTT trigger topic, with a camera."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.triggers import CaptureCommand, parse_command
from inspector.protocol import TopicKind, parse_request
from tests.fixtures.edge import BrokerObserver, write_video


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def camera_settings(
    make_edge_settings: Callable[..., EdgeSettings], tmp_path: Path
) -> Callable[..., EdgeSettings]:
    video = write_video(tmp_path / "cam.avi", frames=4)
    return lambda **kw: make_edge_settings(camera={"source": str(video)}, **kw)


def test_http_post_with_a_part_id_captures_from_the_camera_and_publishes(
    camera_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
) -> None:
    settings = camera_settings(triggers={"http_port": 0})
    seen = observe(settings.station.key.topic(TopicKind.REQUEST))
    with EdgeAgent(settings, quiet_console) as agent:
        assert agent.http is not None
        base = f"http://127.0.0.1:{agent.http.port}"
        status, body = _post(f"{base}/capture", b'{"part_id": "P-1042", "operator": "ann"}')
        assert status == 201 and body["part_id"] == "P-1042"
        status, _plain = _post(f"{base}/capture", b"P-1043", "text/plain")
        assert status == 201
        status, form = _post(f"{base}/capture?part_id=P-1044", b"")
        assert status == 201 and form["part_id"] == "P-1044"
        status, bad = _post(f"{base}/capture", b'{"part_id": "x", "colour": "red"}')
        assert status == 422 and "colour" in bad["error"]
        with urllib.request.urlopen(f"{base}/status", timeout=10) as resp:
            assert "queue_depth" in json.loads(resp.read())
        got = seen.wait_for(3, 10)
    requests = {parse_request(m.payload).part_id: parse_request(m.payload) for m in got}
    assert set(requests) == {"P-1042", "P-1043", "P-1044"}
    assert str(requests["P-1042"].request_id) == body["request_id"]
    assert requests["P-1042"].operator == "ann"
    assert requests["P-1043"].images[0].content_type == "image/jpeg"


def test_http_capture_without_a_camera_is_refused_with_a_reason(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
) -> None:
    with EdgeAgent(make_edge_settings(triggers={"http_port": 0}), quiet_console) as agent:
        assert agent.http is not None
        status, body = _post(f"http://127.0.0.1:{agent.http.port}/capture", b"P-1")
    assert status == 503 and "no camera is configured" in body["error"]


def test_message_on_the_trigger_topic_captures_a_part(
    camera_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
) -> None:
    settings = camera_settings(triggers={"mqtt": True})
    key = settings.station.key
    seen = observe(key.topic(TopicKind.REQUEST))
    with EdgeAgent(settings, quiet_console) as agent:
        assert agent.transport.wait_subscribed(10)
        seen.publish(key.topic(TopicKind.TRIGGER), b'{"part_id": "PLC-7"}')
        got = seen.wait_for(1, 10)
    assert parse_request(got[0].payload).part_id == "PLC-7"


def test_trigger_bodies_accept_json_form_and_bare_part_ids() -> None:
    assert parse_command(b'{"part_id": "A"}') == CaptureCommand(part_id="A")
    assert parse_command(
        b"part_id=B&note=dent", "application/x-www-form-urlencoded"
    ) == CaptureCommand(part_id="B", note="dent")
    assert parse_command(b" C-3 \n", "text/plain") == CaptureCommand(part_id="C-3")
    assert parse_command(b"") == CaptureCommand()
