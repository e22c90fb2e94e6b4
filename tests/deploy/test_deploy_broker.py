"""deploy/mosquitto: the shipped broker config and ACL, run by a private Mosquitto over TLS."""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.mqtt import ConnectionEvent, Message, MqttTransport, PublishRefused
from inspector.protocol import (
    StationKey,
    TopicKind,
    shared_request_subscription,
    status_topic,
)
from inspector.settings import BrokerSettings, TlsSettings
from tests.fixtures.edge import wait_until
from tests.fixtures.tls import PrivateBroker, make_certificates, run_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
ETC = "/etc/mosquitto/inspector/"
STATION = StationKey("plant-a", "line-1", "station-3")  # the station the shipped ACL names
NEIGHBOUR = StationKey("plant-a", "line-1", "station-4")
STATION_USER = "edge-plant-a-line-1-station-3"
PASSWORDS = {"worker": "w-secret", STATION_USER: "s-secret"}

_TOOLS = ("mosquitto", "mosquitto_passwd", "openssl")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in _TOOLS), reason="needs " + ", ".join(_TOOLS)
)


def shipped_config(port: int, root: Path) -> str:
    """deploy/mosquitto/mosquitto.conf with its port and absolute paths moved under `root`."""
    text = (DEPLOY / "mosquitto.conf").read_text()
    moved = text.replace(ETC, f"{root}/").replace("/var/lib/mosquitto/", f"{root}/data/")
    moved, listeners = re.subn(r"(?m)^listener 8883$", f"listener {port} 127.0.0.1", moved)
    # The test must notice when the shipped file changes shape, not run something else.
    assert listeners == 1 and ETC not in moved and "/var/lib/mosquitto" not in moved
    if os.geteuid() == 0:
        # Run as root, Mosquitto would switch to the `mosquitto` user, who cannot read root.
        moved += "\nuser root\n"
    return moved


@pytest.fixture
def deploy_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A Mosquitto running the shipped config and ACL, with test certificates and passwords."""
    tls = tmp_path / "tls"
    tls.mkdir()
    make_certificates(tls)
    (tmp_path / "data").mkdir()
    shutil.copy(DEPLOY / "acl", tmp_path / "acl")
    for user, password in PASSWORDS.items():
        flags = ["-b"] if (tmp_path / "passwd").exists() else ["-c", "-b"]
        run_tool("mosquitto_passwd", *flags, tmp_path / "passwd", user, password)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(shipped_config(port, tmp_path))
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                return True  # exited: a bad option; the assertion below shows the log
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_until(listening, 10) and proc.poll() is None, (
            tmp_path / "mosquitto.log"
        ).read_text()
        yield PrivateBroker(port, tls / "ca.crt", tmp_path / "acl", proc)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def client(
    broker: PrivateBroker, user: str | None, client_id: str, clean_start: bool = False
) -> MqttTransport:
    """A TLS client of the private broker, logged in as `user`."""
    settings = BrokerSettings(
        host="127.0.0.1",
        port=broker.port,
        username=user,
        password=PASSWORDS[user] if user else None,
        tls=TlsSettings(enabled=True, ca_certs=broker.ca),
        connect_timeout_s=5,
        session_expiry_s=300,
    )
    return MqttTransport(settings, client_id, clean_start=clean_start)


class Inbox:
    """Messages one client received, in order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()

    def __call__(self, message: Message) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[Message]:
        """Block until `count` messages arrived; fail the test otherwise."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            got = list(self.messages)
        assert len(got) >= count, f"{len(got)} of {count} messages within {timeout} s"
        return got


def test_station_sends_its_requests_to_workers_and_gets_its_verdicts(
    deploy_broker: PrivateBroker,
) -> None:
    requests, verdicts = Inbox(), Inbox()
    worker = client(deploy_broker, "worker", "inspector-worker-gpu0", clean_start=True)
    worker.subscribe(shared_request_subscription("inspector-workers"), requests)
    station = client(deploy_broker, STATION_USER, STATION_USER, clean_start=True)
    station.subscribe(STATION.topic(TopicKind.VERDICT), verdicts)
    with worker, station:
        assert worker.wait_subscribed(10) and station.wait_subscribed(10)
        station.publish_and_wait(STATION.topic(TopicKind.REQUEST), b"request", timeout=10)
        assert requests.wait_for(1, 10)[0].topic == STATION.topic(TopicKind.REQUEST)
        worker.publish_and_wait(STATION.topic(TopicKind.VERDICT), b"verdict", timeout=10)
        worker.publish_and_wait(status_topic("gpu0"), b"online", timeout=10, retain=True)
        assert verdicts.wait_for(1, 10)[0].payload == b"verdict"


def test_station_is_refused_other_stations_topics_and_cannot_forge_verdicts(
    deploy_broker: PrivateBroker,
) -> None:
    seen = Inbox()
    worker = client(deploy_broker, "worker", "inspector-worker-gpu0", clean_start=True)
    station = client(deploy_broker, STATION_USER, STATION_USER, clean_start=True)
    station.subscribe(NEIGHBOUR.topic(TopicKind.VERDICT), seen)
    station.subscribe(STATION.topic(TopicKind.VERDICT), seen)
    with worker, station:
        assert worker.wait_connected(10) and station.wait_subscribed(10)
        # In order, on one connection: the neighbour's verdict would arrive first if allowed.
        worker.publish_and_wait(NEIGHBOUR.topic(TopicKind.VERDICT), b"theirs", timeout=10)
        worker.publish_and_wait(STATION.topic(TopicKind.VERDICT), b"ours", timeout=10)
        assert [m.payload for m in seen.wait_for(1, 10)] == [b"ours"]
        # Last: paho drops the connection after a refused PUBACK and reconnects.
        for topic in (
            NEIGHBOUR.topic(TopicKind.REQUEST),
            STATION.topic(TopicKind.VERDICT),
            status_topic("gpu0"),
        ):
            with pytest.raises(PublishRefused, match="Not authorized"):
                station.publish_and_wait(topic, b"x", timeout=10)


def test_anonymous_clients_are_refused(deploy_broker: PrivateBroker) -> None:
    events: queue.Queue[ConnectionEvent] = queue.Queue()
    anonymous = client(deploy_broker, None, "nobody", clean_start=True)
    anonymous.on_connection(events.put)
    with anonymous:
        event = events.get(timeout=10)
    assert not event.connected and "authorized" in event.reason.lower()


def test_a_stopped_workers_session_keeps_every_request_past_the_default_queue_limit(
    deploy_broker: PrivateBroker,
) -> None:
    count = 1500  # Mosquitto's default max_queued_messages of 1000 would drop the rest
    requests = Inbox()
    worker = client(deploy_broker, "worker", "inspector-worker-gpu1")
    worker.subscribe(shared_request_subscription("inspector-workers"), requests)
    with worker:
        assert worker.wait_subscribed(10)  # the persistent session now holds the subscription
    station = client(deploy_broker, STATION_USER, STATION_USER, clean_start=True)
    with station:
        assert station.wait_connected(10)
        pubs = [
            station.publish(STATION.topic(TopicKind.REQUEST), f"{i}".encode()) for i in range(count)
        ]
        deadline = time.monotonic() + 30
        assert all(p.wait(max(0.0, deadline - time.monotonic())) for p in pubs)
        assert not [p.refused for p in pubs if p.refused]
    assert requests.messages == []
    again = client(deploy_broker, "worker", "inspector-worker-gpu1")
    again.subscribe(shared_request_subscription("inspector-workers"), requests)
    with again:
        got = requests.wait_for(count, 30)
    assert sorted(int(m.payload) for m in got) == list(range(count))
