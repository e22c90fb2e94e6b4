"""deploy/mosquitto: the shipped broker config and ACL, run by a private Mosquitto over TLS."""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.mqtt import ConnectionEvent, Message, MqttTransport, PublishRefused
from inspector.protocol import (
    TOPIC_ROOT,
    StationKey,
    TopicKind,
    adapter_control_filter,
    adapter_control_topic,
    shared_request_subscription,
    status_topic,
    worker_status_filter,
)
from inspector.settings import BrokerSettings, TlsSettings
from inspector.worker.reaper import Reaper
from inspector.worker.run import worker_client_id
from tests.fixtures.deploy import MAKE_CERTS, PASSWORDS, STATION_USER, running_deploy_broker
from tests.fixtures.tls import PrivateBroker, run_tool

STATION = StationKey("plant-a", "line-1", "station-3")  # the station the shipped ACL names
NEIGHBOUR = StationKey("plant-a", "line-1", "station-4")
CONTROL = adapter_control_topic("plant-a")

_TOOLS = ("mosquitto", "mosquitto_passwd", "openssl")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in _TOOLS), reason="needs " + ", ".join(_TOOLS)
)


@pytest.fixture(scope="module")
def deploy_certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA, broker and client certificates, made once by the shipped deploy/make-certs.sh."""
    tls = tmp_path_factory.mktemp("tls")
    clients = [arg for user in PASSWORDS for arg in ("--client", user)]
    run_tool("sh", MAKE_CERTS, "-o", tls, "--broker", "127.0.0.1", "--days", "2", *clients)
    return tls


@pytest.fixture
def deploy_broker(tmp_path: Path, deploy_certificates: Path) -> Iterator[PrivateBroker]:
    """The shipped broker config with passwords."""
    with running_deploy_broker(tmp_path, deploy_certificates) as broker:
        yield broker


@pytest.fixture
def mtls_broker(tmp_path: Path, deploy_certificates: Path) -> Iterator[PrivateBroker]:
    """The shipped broker config with its mutual-TLS lines switched on."""
    with running_deploy_broker(tmp_path, deploy_certificates, mutual_tls=True) as broker:
        yield broker


def client(
    broker: PrivateBroker,
    user: str | None,
    client_id: str,
    clean_start: bool = False,
    certificate: str | None = None,
) -> MqttTransport:
    """A TLS client of the private broker, logged in as `user` or by its client certificate."""
    clients = broker.ca.parent / "clients"
    settings = BrokerSettings(
        host="127.0.0.1",
        port=broker.port,
        username=user,
        password=PASSWORDS[user] if user else None,
        tls=TlsSettings(
            enabled=True,
            ca_certs=broker.ca,
            certfile=clients / f"{certificate}.crt" if certificate else None,
            keyfile=clients / f"{certificate}.key" if certificate else None,
        ),
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


def test_station_sends_its_requests_to_workers_and_gets_its_verdicts_and_rationales(
    deploy_broker: PrivateBroker,
) -> None:
    requests, verdicts, rationales = Inbox(), Inbox(), Inbox()
    worker = client(deploy_broker, "worker", "inspector-worker-gpu0", clean_start=True)
    worker.subscribe(shared_request_subscription("inspector-workers"), requests)
    station = client(deploy_broker, STATION_USER, STATION_USER, clean_start=True)
    station.subscribe(STATION.topic(TopicKind.VERDICT), verdicts)
    station.subscribe(STATION.topic(TopicKind.RATIONALE), rationales)
    with worker, station:
        assert worker.wait_subscribed(10) and station.wait_subscribed(10)
        station.publish_and_wait(STATION.topic(TopicKind.REQUEST), b"request", timeout=10)
        assert requests.wait_for(1, 10)[0].topic == STATION.topic(TopicKind.REQUEST)
        worker.publish_and_wait(STATION.topic(TopicKind.VERDICT), b"verdict", timeout=10)
        worker.publish_and_wait(STATION.topic(TopicKind.RATIONALE), b"rationale", timeout=10)
        worker.publish_and_wait(status_topic("gpu0"), b"online", timeout=10, retain=True)
        assert verdicts.wait_for(1, 10)[0].payload == b"verdict"
        assert rationales.wait_for(1, 10)[0].payload == b"rationale"


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
            STATION.topic(TopicKind.RATIONALE),
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


def test_a_worker_hears_its_peers_status_and_may_end_a_dead_peers_session(
    deploy_broker: PrivateBroker,
) -> None:
    statuses = Inbox()
    dead = client(deploy_broker, "worker", worker_client_id("gpu1"))
    dead.subscribe(shared_request_subscription("inspector-workers"), Inbox())
    with dead:
        assert dead.wait_subscribed(10)  # gone now: its persistent session keeps queueing
    live = client(deploy_broker, "worker", worker_client_id("gpu0"), clean_start=True)
    live.subscribe(worker_status_filter(), statuses)
    with live:
        assert live.wait_subscribed(10)
        live.publish_and_wait(status_topic("gpu0"), b"online", timeout=10, retain=True)
        assert [m.topic for m in statuses.wait_for(1, 10)] == [status_topic("gpu0")]
        reaper = Reaper(live.settings, "gpu0", (), worker_client_id)
        assert reaper.reap("gpu1").ended
    events: queue.Queue[ConnectionEvent] = queue.Queue()
    look = client(deploy_broker, "worker", worker_client_id("gpu1"))
    look.on_connection(events.put)
    with look:
        event = events.get(timeout=10)
    assert event.connected and not event.session_present


def test_only_the_registry_writes_the_adapter_control_topic_and_workers_read_it(
    deploy_broker: PrivateBroker,
) -> None:
    got = Inbox()
    registry = client(deploy_broker, "registry", "inspector-registry", clean_start=True)
    worker = client(deploy_broker, "worker", "inspector-worker-gpu0", clean_start=True)
    station = client(deploy_broker, STATION_USER, STATION_USER, clean_start=True)
    review = client(deploy_broker, "review", "inspector-review", clean_start=True)
    with registry, worker, station, review:
        assert registry.wait_connected(10) and station.wait_connected(10)
        assert review.wait_connected(10)
        registry.publish_and_wait(CONTROL, b"plant-a-v2", timeout=10, retain=True)
        # Retained: a worker subscribing afterwards gets the active adapter at once.
        worker.subscribe(adapter_control_filter(), got)
        assert worker.wait_subscribed(10)
        assert [m.payload for m in got.wait_for(1, 10)] == [b"plant-a-v2"]
        for who in (station, worker, review):
            with pytest.raises(PublishRefused, match="Not authorized"):
                who.publish_and_wait(CONTROL, b"forged", timeout=10)
    # The retained announcement is still the registry's.
    again = Inbox()
    late = client(deploy_broker, "worker", "inspector-worker-gpu1", clean_start=True)
    late.subscribe(CONTROL, again)
    with late:
        assert [m.payload for m in again.wait_for(1, 10)] == [b"plant-a-v2"]


def test_station_reads_no_other_stations_verdicts_or_requests(
    deploy_broker: PrivateBroker,
) -> None:
    seen = Inbox()
    worker = client(deploy_broker, "worker", "inspector-worker-gpu0", clean_start=True)
    station = client(deploy_broker, STATION_USER, STATION_USER, clean_start=True)
    station.subscribe(f"{TOPIC_ROOT}/+/+/+/+", seen)
    station.subscribe(STATION.topic(TopicKind.VERDICT), seen)
    with worker, station:
        assert worker.wait_connected(10) and station.wait_subscribed(10)
        # A wildcard subscription is granted, but only the station's own topics deliver.
        for kind in (TopicKind.VERDICT, TopicKind.REJECTED):
            worker.publish_and_wait(NEIGHBOUR.topic(kind), b"theirs", timeout=10)
        worker.publish_and_wait(status_topic("gpu0"), b"online", timeout=10)
        worker.publish_and_wait(STATION.topic(TopicKind.VERDICT), b"ours", timeout=10)
        got = seen.wait_for(1, 10)
        assert {m.topic for m in got} == {STATION.topic(TopicKind.VERDICT)}
        assert all(m.payload == b"ours" for m in got)


def test_with_mutual_tls_the_certificate_names_the_user_and_its_acl_applies(
    mtls_broker: PrivateBroker,
) -> None:
    seen = Inbox()
    worker = client(mtls_broker, None, "inspector-worker-gpu0", True, certificate="worker")
    station = client(mtls_broker, None, STATION_USER, True, certificate=STATION_USER)
    station.subscribe(STATION.topic(TopicKind.VERDICT), seen)
    with worker, station:
        assert worker.wait_connected(10) and station.wait_subscribed(10)
        worker.publish_and_wait(STATION.topic(TopicKind.VERDICT), b"ours", timeout=10)
        assert [m.payload for m in seen.wait_for(1, 10)] == [b"ours"]
        with pytest.raises(PublishRefused, match="Not authorized"):
            station.publish_and_wait(NEIGHBOUR.topic(TopicKind.REQUEST), b"x", timeout=10)
        with pytest.raises(PublishRefused, match="Not authorized"):
            station.publish_and_wait(CONTROL, b"x", timeout=10)
    # A password alone is no longer enough.
    events: queue.Queue[ConnectionEvent] = queue.Queue()
    password_only = client(mtls_broker, STATION_USER, "pw-only", clean_start=True)
    password_only.on_connection(events.put)
    with password_only:
        event = events.get(timeout=10)
    assert not event.connected
