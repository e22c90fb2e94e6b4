"""Re-sends: a capture the broker acknowledged is published again until its answer arrives."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from edge.agent import EdgeAgent
from edge.config import EdgeSettings, SpoolSettings
from edge.publisher import Publisher
from edge.spool import Spool
from inspector.mqtt import MqttTransport
from inspector.protocol import TopicKind, parse_request
from inspector.settings import BrokerSettings
from tests.fixtures.edge import BrokerObserver, jpeg_bytes, screen, wait_until


def test_re_send_waits_double_up_to_resend_max_and_are_jittered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    transport = MqttTransport(BrokerSettings(), "edge-delays-unstarted")
    publisher = Publisher(
        spool,
        transport,
        SpoolSettings(resend_max_s=100),
        verdict_timeout_s=10,
        rng=random.Random(7),
    )
    try:
        waits = [[publisher.resend_delay(n) for _ in range(200)] for n in range(1, 8)]
    finally:
        spool.close()
    for n, got in enumerate(waits, start=1):
        top = min(100.0, 10.0 * 2 ** (n - 1))
        assert all(0.8 * top <= w <= top for w in got), (n, min(got), max(got))
        assert max(got) - min(got) > 0.1 * top  # spread, so stations do not come back together
    assert max(waits[-1]) <= 100.0


def test_a_capture_without_an_answer_is_re_sent_with_its_request_id_until_answered(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    settings = make_edge_settings(
        display={"verdict_timeout_s": 0.4}, spool={"resend_max_s": 0.8, "retry_min_s": 0.2}
    )
    seen = observe(settings.station.key.topic(TopicKind.REQUEST))
    photo = tmp_path / "part-7.jpg"
    photo.write_bytes(jpeg_bytes(seed=7))
    with EdgeAgent(settings, quiet_console) as agent:
        request_id = agent.capture_file(photo).request_id
        got = seen.wait_for(3, 20)
        assert {str(parse_request(m.payload).request_id) for m in got} == {request_id}
        assert len({m.payload for m in got}) == 1  # the very same request each time
        st = agent.stats()
        assert (st.depth, st.unanswered, st.resent) == (0, 1, 1)
        assert agent.status_dict()["resent"] == 1
        seen.reject(got[0].payload)
        assert wait_until(lambda: agent.stats().unanswered == 0, 10)
        settled = len(seen.messages)
        # Nothing more is sent once the answer is in (a PUBACK in flight may still land).
        assert not wait_until(lambda: len(seen.messages) > settled + 1, 2.0)
        sends = agent.spool.capture(request_id).sends  # type: ignore[union-attr]
        assert agent.publisher.resends == sends - 1 >= 2
    shown = screen(quiet_console)
    assert "re-sent (1) part part-7" in shown and "re-sent (2) part part-7" in shown
    # The panel counts the re-sends acknowledged when the answer came: at least one.
    assert re.search(r"REJECTED part part-7 image\.undecodable re-sent \([1-9]\d*\)", shown)
