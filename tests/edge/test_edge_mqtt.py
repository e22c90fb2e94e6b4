"""The MQTT transport against the real broker: PUBACKs, persistent sessions, manual acks."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from inspector.mqtt import Message, MqttTransport, PublishTimeout, Will
from inspector.settings import BrokerSettings
from tests.fixtures.edge import BrokerObserver, TcpRelay


def _settings(host: str, port: int, **extra: object) -> BrokerSettings:
    return BrokerSettings.model_validate(
        {"host": host, "port": port, "connect_timeout_s": 2, "session_expiry_s": 120, **extra}
    )


def test_publish_and_wait_returns_after_the_broker_acknowledged(
    broker: tuple[str, int], unique: str, observe: Callable[[str], BrokerObserver]
) -> None:
    topic = f"inspector/v1/{unique}/l1/s1/request"
    seen = observe(topic)
    with MqttTransport(_settings(*broker), f"pub-{unique}") as transport:
        assert transport.wait_connected(10)
        transport.publish_and_wait(topic, b"hello", timeout=10)
        # QoS 0 and QoS 1 share message ids: mixing them must not confuse the PUBACKs.
        pubs = [transport.publish(topic, f"m{i}".encode(), qos=i % 2) for i in range(20)]
        assert all(p.wait(10) and p.refused is None for p in pubs)
    got = seen.wait_for(21, 10)
    assert sorted(m.payload for m in got) == sorted(
        [b"hello"] + [f"m{i}".encode() for i in range(20)]
    )


def test_publish_while_broker_unreachable_times_out_then_is_sent_on_connect(
    broker: tuple[str, int],
    unique: str,
    relay: TcpRelay,
    observe: Callable[[str], BrokerObserver],
) -> None:
    topic = f"inspector/v1/{unique}/l1/s1/request"
    seen = observe(topic)
    transport = MqttTransport(
        _settings("127.0.0.1", relay.port), f"pub-{unique}", reconnect_min_s=1, reconnect_max_s=1
    )
    transport.start()
    try:
        assert not transport.wait_connected(0.5)
        with pytest.raises(PublishTimeout):
            transport.publish_and_wait(topic, b"queued", timeout=0.3)
        relay.start()
        assert transport.wait_connected(10)
        assert seen.wait_for(1, 10)[0].payload == b"queued"
    finally:
        transport.stop()


def test_persistent_session_receives_what_was_published_while_it_was_away(
    broker: tuple[str, int], unique: str
) -> None:
    topic = f"inspector/v1/{unique}/l1/s1/verdict"
    got: list[bytes] = []
    arrived = threading.Event()

    def handler(msg: Message) -> None:
        got.append(msg.payload)
        arrived.set()

    first = MqttTransport(_settings(*broker), f"sub-{unique}")
    first.subscribe(topic, handler)
    first.start()
    assert first.wait_subscribed(10)
    first.stop()
    with MqttTransport(_settings(*broker), f"other-{unique}") as publisher:
        assert publisher.wait_connected(10)
        publisher.publish_and_wait(topic, b"while-away", timeout=10)
    second = MqttTransport(_settings(*broker), f"sub-{unique}")
    second.subscribe(topic, handler)
    second.start()
    try:
        assert arrived.wait(10)
        assert got[-1] == b"while-away"
    finally:
        second.stop()


def test_manual_ack_redelivers_a_message_that_was_not_acknowledged(
    broker: tuple[str, int], unique: str
) -> None:
    topic = f"inspector/v1/{unique}/l1/s1/request"
    received: list[Message] = []
    arrived = threading.Condition()

    def handler(msg: Message) -> None:
        with arrived:
            received.append(msg)
            arrived.notify_all()

    def consumer() -> MqttTransport:
        t = MqttTransport(_settings(*broker), f"worker-{unique}", manual_ack=True)
        t.subscribe(topic, handler)
        return t

    first = consumer()
    first.start()
    assert first.wait_subscribed(10)
    with MqttTransport(_settings(*broker), f"pub-{unique}") as publisher:
        assert publisher.wait_connected(10)
        publisher.publish_and_wait(topic, b"job", timeout=10)
    with arrived:
        assert arrived.wait_for(lambda: received, 10)
    first.stop()  # never acked: the broker must send it again
    count = len(received)
    second = consumer()
    second.start()
    try:
        with arrived:
            assert arrived.wait_for(lambda: len(received) > count, 10)
        again = received[-1]
        assert again.payload == b"job"
        second.ack(again)
    finally:
        second.stop()


def test_last_will_is_published_when_the_client_vanishes(
    broker: tuple[str, int],
    unique: str,
    relay: TcpRelay,
    observe: Callable[[str], BrokerObserver],
) -> None:
    topic = f"inspector/v1/workers/{unique}/status"
    seen = observe(topic)
    relay.start()
    transport = MqttTransport(
        _settings("127.0.0.1", relay.port, keepalive_s=5),
        f"w-{unique}",
        will=Will(topic, b"offline", retain=False),
    )
    transport.start()
    try:
        assert transport.wait_connected(10)
        relay.stop()  # the connection dies without a DISCONNECT packet
        assert seen.wait_for(1, 15)[0].payload == b"offline"
    finally:
        transport.stop()


def test_mqtt_311_clients_keep_their_session_too(broker: tuple[str, int], unique: str) -> None:
    topic = f"inspector/v1/{unique}/l1/s1/verdict"
    got: list[bytes] = []
    arrived = threading.Event()

    def handler(msg: Message) -> None:
        got.append(msg.payload)
        arrived.set()

    def subscriber() -> MqttTransport:
        t = MqttTransport(_settings(*broker), f"sub311-{unique}", v311=True)
        t.subscribe(topic, handler)
        return t

    first = subscriber()
    first.start()
    assert first.wait_subscribed(10)
    first.stop()
    with MqttTransport(_settings(*broker), f"pub311-{unique}", v311=True) as publisher:
        assert publisher.wait_connected(10)
        publisher.publish_and_wait(topic, b"kept", timeout=10)
    second = subscriber()
    second.start()
    try:
        assert arrived.wait(10) and got == [b"kept"]
    finally:
        second.stop()
    # 3.1.1 sessions never expire on their own: end this one with a clean connect.
    with MqttTransport(
        _settings(*broker), f"sub311-{unique}", v311=True, clean_start=True
    ) as cleaner:
        assert cleaner.wait_connected(10)


def test_client_id_and_tls_files_are_checked_up_front(tmp_path: object) -> None:
    from inspector.errors import ConfigError

    with pytest.raises(ConfigError, match="client id"):
        MqttTransport(_settings("127.0.0.1", 1883), "has space")
    tls = {"tls": {"enabled": True, "ca_certs": "/nonexistent/ca.crt"}}
    with pytest.raises(ConfigError, match=r"broker\.tls\.ca_certs"):
        MqttTransport(_settings("127.0.0.1", 8883, **tls), "tls-client")
