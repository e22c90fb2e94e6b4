"""Reaping: a live worker ends a dead peer's broker session, and a peer that is back survives it.

Against a private Mosquitto, with the workers' real transports (`worker_transport`: client
id, persistent session, last will, manual acks) on the shared request subscription; a TCP
relay in front of the peer cuts its connection without a DISCONNECT, as a kill -9 does.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.mqtt import ConnectionEvent, Message, MqttTransport
from inspector.protocol import (
    StationKey,
    TopicKind,
    WorkerState,
    shared_request_subscription,
    status_topic,
)
from inspector.settings import BrokerSettings, Settings
from inspector.worker.reaper import Reaped, Reaper
from inspector.worker.run import worker_client_id, worker_transport
from inspector.worker.service import status_message
from tests.fixtures.drills import PrivateBroker
from tests.fixtures.edge import wait_until
from tests.fixtures.services import TcpRelay, free_port
from tests.fixtures.worker import forget_session, make_settings


def _settings(site: str, worker_id: str, port: int, tmp_path: Path) -> Settings:
    return make_settings(
        site, "sqlite:///unused.db", tmp_path, ("127.0.0.1", port), worker_id=worker_id
    )


def _reaper(settings: Settings, reaped: queue.Queue[Reaped] | None = None) -> Reaper:
    ws = settings.worker
    on_reaped = reaped.put if reaped is not None else None
    return Reaper(settings.broker, ws.worker_id, ws.sites, worker_client_id, on_reaped=on_reaped)


def _publish(port: int, site: str, payloads: list[bytes]) -> None:
    topic = StationKey(site, "l1", "s1").topic(TopicKind.REQUEST)
    settings = BrokerSettings(host="127.0.0.1", port=port, connect_timeout_s=2)
    with MqttTransport(settings, f"station-{site}", clean_start=True) as station:
        assert station.wait_connected(10)
        for payload in payloads:
            station.publish_and_wait(topic, payload, timeout=10)


def _session_present(port: int, client_id: str) -> bool:
    """Whether the broker still holds a session for `client_id` (connecting as it to look)."""
    events: queue.Queue[ConnectionEvent] = queue.Queue()
    settings = BrokerSettings(host="127.0.0.1", port=port, connect_timeout_s=2)
    probe = MqttTransport(settings, client_id, clean_start=False)
    probe.on_connection(events.put)
    probe.start()
    try:
        event = events.get(timeout=10)
    finally:
        probe.stop()
    assert event.connected, event.reason
    return event.session_present


@pytest.fixture
def relay(private_broker: PrivateBroker) -> Iterator[TcpRelay]:
    relay = TcpRelay(("127.0.0.1", private_broker.port))
    relay.start()
    yield relay
    relay.stop()


def test_a_peer_killed_for_good_has_its_session_ended_so_every_later_request_reaches_a_live_worker(
    private_broker: PrivateBroker, relay: TcpRelay, tmp_path: Path, unique: str
) -> None:
    port = private_broker.port
    peer_settings = _settings(unique, "peer", relay.port, tmp_path)
    live_settings = _settings(unique, "live", port, tmp_path)
    subscription = shared_request_subscription(unique, unique)
    peer_got: queue.Queue[bytes] = queue.Queue()
    live_got: queue.Queue[bytes] = queue.Queue()
    peer, live = worker_transport(peer_settings), worker_transport(live_settings)
    peer.subscribe(subscription, lambda m: peer_got.put(m.payload))

    def serve(message: Message) -> None:
        live_got.put(message.payload)
        live.ack(message)

    live.subscribe(subscription, serve)
    reaped: queue.Queue[Reaped] = queue.Queue()
    reaper = _reaper(live_settings, reaped)
    reaper.attach(live)
    reaper.start()
    for t in (peer, live):
        t.start()
    try:
        assert peer.wait_subscribed(10) and live.wait_subscribed(10)
        relay.stop()  # the peer's connection ends without a DISCONNECT: its will goes out
        assert reaped.get(timeout=15) == Reaped("peer", worker_client_id("peer"), True, "Success")
        sent = [f"request-{i}".encode() for i in range(10)]
        _publish(port, unique, sent)
        assert sorted(live_got.get(timeout=10) for _ in sent) == sorted(sent)
        assert peer_got.empty()
        assert not _session_present(port, worker_client_id("peer"))
    finally:
        reaper.stop()
        for t in (peer, live):
            t.stop()


def test_a_peer_reaped_just_as_it_came_back_loses_its_queue_never_its_work(
    private_broker: PrivateBroker, relay: TcpRelay, tmp_path: Path, unique: str
) -> None:
    port = private_broker.port
    settings = _settings(unique, "peer", relay.port, tmp_path)
    got: queue.Queue[Message] = queue.Queue()
    connects = threading.Semaphore(0)
    peer = worker_transport(settings)
    peer.subscribe(shared_request_subscription(unique, unique), got.put)
    peer.on_connection(lambda e: connects.release() if e.connected else None)
    peer.start()
    try:
        assert connects.acquire(timeout=10) and peer.wait_subscribed(10)
        _publish(port, unique, [b"first"])
        first = got.get(timeout=10)
        # The race at its worst: a live peer's id is taken over with a clean start.
        reaper = _reaper(_settings(unique, "live", port, tmp_path))
        assert reaper.reap("peer").ended
        assert connects.acquire(timeout=15), "the peer did not reconnect by itself"
        assert wait_until(lambda: peer.wait_subscribed(0), 10)
        _publish(port, unique, [b"second"])
        second = got.get(timeout=10)
        assert second.payload == b"second"
        # The first request's work ends now: its ack belongs to the session that was
        # ended and must not acknowledge the second, whose packet id it may share.
        peer.ack(first)
        assert peer.unacked == 1
    finally:
        peer.stop()
    # The peer's next run resumes its session: the broker still has the second request.
    again = worker_transport(_settings(unique, "peer", port, tmp_path))
    again.subscribe(shared_request_subscription(unique, unique), got.put)
    again.start()
    try:
        redelivered = got.get(timeout=10)
        assert (redelivered.payload, redelivered.dup) == (b"second", True)
        again.ack(redelivered)
    finally:
        again.stop()
        forget_session(("127.0.0.1", port), worker_client_id("peer"))


def _status(
    worker_id: str, state: WorkerState, sites: tuple[str, ...] = ("a",), retain: bool = False
) -> Message:
    payload = status_message(worker_id, state, None, sites=sites).to_payload()
    return Message(status_topic(worker_id), payload, 0, retain, 0, False)


def test_only_a_fresh_offline_of_a_peer_whose_sites_it_serves_is_reaped() -> None:
    broker = BrokerSettings(host="127.0.0.1", port=1)
    reaper = Reaper(broker, "me", ("a", "b"), worker_client_id, stopping_grace_s=30)
    reaper.on_status(_status("me", "offline"))  # its own old will: never itself
    reaper.on_status(_status("old", "offline", retain=True))  # history, met on subscribing
    reaper.on_status(_status("elsewhere", "offline", sites=("c",)))  # its share goes nowhere
    reaper.on_status(_status("everything", "offline", sites=()))  # serves more than "me"
    reaper.on_status(_status("dead", "offline", sites=("a",)))
    assert list(reaper.pending()) == ["dead"]
    assert reaper.pending()["dead"] <= 0  # a last will: at once

    reaper.on_status(_status("stopping", "draining"))
    reaper.on_status(_status("stopping", "offline"))
    assert 25 < reaper.pending()["stopping"] <= 30  # it disconnects by itself first
    reaper.on_status(_status("stopping", "online"))  # back: nothing to reap
    reaper.on_status(_status("dead", "online"))
    assert reaper.pending() == {}


def test_an_unreachable_broker_is_reported_not_raised(tmp_path: Path, unique: str) -> None:
    reaper = _reaper(_settings(unique, "live", free_port(), tmp_path))
    reaped = reaper.reap("peer")
    assert not reaped.ended and reaped.reason == "cannot reach the broker"
