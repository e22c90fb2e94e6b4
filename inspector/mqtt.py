"""MQTT v5 transport shared by the edge agent and the worker, built on paho-mqtt 2.x.

One `MqttTransport` owns one paho client and its network thread. It connects with bounded
timeouts, reconnects with exponential backoff, re-subscribes after every connect, and turns
PUBACKs (with their v5 reason codes) into `Publication` handles a caller can wait on.
"""

from __future__ import annotations

import logging
import math
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from inspector.errors import ConfigError, PublishFailed
from inspector.errors import PublishRefused as PublishRefused
from inspector.errors import PublishTimeout as PublishTimeout
from inspector.settings import BrokerSettings

log = logging.getLogger(__name__)

# MQTT 3.1.1 allows 23 characters; v5 brokers accept more, but keep ids readable and safe.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Will:
    """A last-will message the broker publishes when the client vanishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    """A received message; `ack()` it on the transport when manual acks are on."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool
    # Which broker session delivered it: a packet id means something only within one.
    session: int = 0
    # Seconds left before the broker would have dropped it undelivered (MQTT 5 message
    # expiry), or None when it was sent without one.
    expiry_s: int | None = None


Handler = Callable[[Message], None]


@dataclass(slots=True)
class Publication:
    """One publish in flight; `wait` returns once the broker has acknowledged it."""

    topic: str
    mid: int
    qos: int
    _done: threading.Event = field(default_factory=threading.Event)
    _reason: ReasonCode | None = None

    def wait(self, timeout: float) -> bool:
        """True once acknowledged (successfully or not), False if `timeout` passed first."""
        return self._done.wait(timeout)

    @property
    def acknowledged(self) -> bool:
        """The broker answered (PUBACK for QoS 1; written to the socket, or dropped, for QoS 0)."""
        return self._done.is_set()

    @property
    def refused(self) -> str | None:
        """The v5 failure reason of the PUBACK, or None when it succeeded or is pending."""
        if self._reason is not None and self._reason.is_failure:
            return str(self._reason)
        return None

    def _complete(self, reason: ReasonCode | None) -> None:
        self._reason = reason
        self._done.set()


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """Passed to connection listeners on every connect and disconnect."""

    connected: bool
    session_present: bool
    reason: str


class MqttTransport:
    """A persistent-session MQTT v5 client with reconnect backoff and PUBACK tracking."""

    def __init__(
        self,
        settings: BrokerSettings,
        client_id: str,
        *,
        clean_start: bool = False,
        will: Will | None = None,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        max_inflight: int = 20,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 30,
        v311: bool = False,
    ) -> None:
        if not _CLIENT_ID.match(client_id):
            raise ConfigError(
                f"MQTT client id {client_id!r} must be 1-128 letters, digits or '_.:-'"
            )
        self.settings = settings
        self.client_id = client_id
        self._clean_start = clean_start
        self._handlers: list[tuple[str, int, Handler]] = []
        self._listeners: list[Callable[[ConnectionEvent], None]] = []
        self._cond = threading.Condition()
        self._pending: dict[int, Publication] = {}
        self._early: dict[int, ReasonCode | None] = {}
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._subscribe_mid: int | None = None
        self._started = False
        self._manual_ack = manual_ack
        # Received with manual acks and not acked yet (this connection's message ids).
        self._unacked: set[int] = set()
        # Counts the broker sessions this client has had: a connect without a session
        # present starts a new one, in which the old packet ids name other messages.
        self._session = 0
        self._receive_maximum = receive_maximum
        # MQTT 3.1.1 only for brokers without v5 (the embedded demo broker): no session
        # expiry, no reason codes in PUBACK, no receive maximum; persistence via clean_session.
        self._v311 = v311 or settings.protocol == "3.1.1"
        self._client = self._build(will, manual_ack, max_inflight, reconnect_min_s, reconnect_max_s)

    # --- construction ------------------------------------------------------------------

    def _build(
        self,
        will: Will | None,
        manual_ack: bool,
        max_inflight: int,
        reconnect_min_s: int,
        reconnect_max_s: int,
    ) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv311 if self._v311 else paho.MQTTv5,
            clean_session=self._clean_start if self._v311 else None,
            manual_ack=manual_ack,
        )
        client.connect_timeout = s.connect_timeout_s
        client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        client.max_inflight_messages_set(max_inflight)
        if s.username:
            password = s.password.get_secret_value() if s.password is not None else None
            client.username_pw_set(s.username, password)
        if s.tls.enabled:
            self._set_tls(client)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        return client

    def _set_tls(self, client: paho.Client) -> None:
        tls = self.settings.tls
        for name, path in (
            ("ca_certs", tls.ca_certs),
            ("certfile", tls.certfile),
            ("keyfile", tls.keyfile),
        ):
            if path is not None and not path.is_file():
                raise ConfigError(f"broker.tls.{name}: file {path} does not exist")
        try:
            client.tls_set(
                ca_certs=str(tls.ca_certs) if tls.ca_certs else None,
                certfile=str(tls.certfile) if tls.certfile else None,
                keyfile=str(tls.keyfile) if tls.keyfile else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"broker.tls: cannot load certificates: {exc}") from None
        client.tls_insecure_set(tls.insecure)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry_s
        if self._receive_maximum is not None:
            props.ReceiveMaximum = self._receive_maximum
        return props

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background; reconnects forever with backoff until stop()."""
        if self._started:
            return
        self._started = True
        s = self.settings
        if self._v311:
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        else:
            self._client.connect_async(
                s.host,
                s.port,
                keepalive=s.keepalive_s,
                clean_start=self._clean_start,
                properties=self._connect_properties(),
            )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or `timeout` seconds pass; True when connected."""
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until connected and the broker acknowledged every subscription."""
        return self._subscribed.wait(timeout)

    @property
    def connected(self) -> bool:
        """Whether the client currently holds an accepted connection."""
        return self._connected.is_set()

    def stop(self) -> None:
        """Disconnect cleanly and stop the network thread (the broker keeps the session)."""
        if not self._started:
            return
        self._started = False
        # Disconnecting first makes paho's loop exit even with unacknowledged messages.
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._subscribed.clear()

    def __enter__(self) -> MqttTransport:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- subscribing -------------------------------------------------------------------

    def on_connection(self, listener: Callable[[ConnectionEvent], None]) -> None:
        """Call `listener` (on the network thread) on every connect and disconnect."""
        self._listeners.append(listener)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Route messages matching `topic_filter` to `handler`, re-subscribing on reconnects.

        Handlers run on the network thread: keep them short and hand work off to a queue.
        """
        self._handlers.append((topic_filter, qos, handler))
        if self.connected:
            self._client.subscribe(topic_filter, qos=qos)

    def ack(self, message: Message) -> None:
        """Acknowledge a message received with manual acks on (after its work is durable).

        A message of a session the broker no longer has (it expired, or a client took the
        id over with a clean start) is not acknowledged: the broker forgot it, and its
        packet id may already name a message of the new session that is not done yet.
        """
        with self._cond:
            if message.session != self._session:
                log.debug("ack of message %d from an ended session dropped", message.mid)
                return
        self._client.ack(message.mid, message.qos)
        with self._cond:
            self._unacked.discard(message.mid)

    @property
    def unacked(self) -> int:
        """Messages received with manual acks on and not yet acknowledged."""
        with self._cond:
            return len(self._unacked)

    # --- publishing --------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
    ) -> Publication:
        """Hand a message to the client; while disconnected paho queues it for the next connect.

        QoS 0 messages are not queued: published while disconnected, they are dropped (and
        the returned publication counts as done), as MQTT defines. With `expiry_s` (MQTT 5)
        the broker drops the message once it has waited that long for its subscriber (a
        session whose client is away), rounded up to whole seconds.
        """
        properties = None
        if expiry_s is not None and not self._v311:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.MessageExpiryInterval = max(1, math.ceil(expiry_s))
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishFailed(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        pub = Publication(topic, info.mid, qos)
        if qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            pub._complete(None)
            return pub
        # Every other publish gets an on_publish (PUBACK, or the socket write for QoS 0), which
        # may run before publish() returns: _on_publish parks it in _early. Registering QoS 0
        # too means no early entry is ever left behind to be mistaken for a later PUBACK.
        with self._cond:
            if info.mid in self._early:
                pub._complete(self._early.pop(info.mid))
            else:
                self._pending[info.mid] = pub
        return pub

    def publish_and_wait(
        self, topic: str, payload: bytes, timeout: float, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and block until the PUBACK; raise PublishTimeout or PublishRefused."""
        pub = self.publish(topic, payload, qos=qos, retain=retain)
        if not pub.wait(timeout):
            raise PublishTimeout(f"no PUBACK for {topic} within {timeout:g} s")
        if pub.refused is not None:
            raise PublishRefused(topic, pub.refused)

    # --- paho callbacks (network thread) -------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning(
                "broker %s:%s refused the connection: %s",
                self.settings.host,
                self.settings.port,
                reason,
            )
            self._notify(ConnectionEvent(False, False, str(reason)))
            return
        if not flags.session_present:
            with self._cond:
                self._session += 1
        if self._handlers:
            # One SUBSCRIBE for all filters, so one SUBACK tells us they are all in place.
            _, mid = client.subscribe([(f, q) for f, q, _ in self._handlers])
            self._subscribe_mid = mid
        else:
            self._subscribed.set()
        self._connected.set()
        log.info(
            "connected to %s:%s as %s (session present: %s)",
            self.settings.host,
            self.settings.port,
            self.client_id,
            flags.session_present,
        )
        self._notify(ConnectionEvent(True, flags.session_present, str(reason)))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # TCP or TLS failed before any CONNACK: the broker is down, unreachable or not TLS.
        self._notify(ConnectionEvent(False, False, "cannot reach the broker"))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        with self._cond:
            # The broker sends them again on the next connection, under new ids.
            self._unacked.clear()
        if was:
            # A clean disconnect (ours at stop(), or the broker's "Normal disconnection") is
            # routine; only a lost connection is worth a warning.
            log.log(
                logging.WARNING if reason.is_failure else logging.INFO,
                "disconnected from %s:%s: %s",
                self.settings.host,
                self.settings.port,
                reason,
            )
        self._notify(ConnectionEvent(False, False, str(reason)))

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.warning("broker refused a subscription: %s", ", ".join(refused))
        if mid == self._subscribe_mid:
            self._subscribed.set()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            pub = self._pending.pop(mid, None)
            if pub is None:
                self._early[mid] = reason
                return
        pub._complete(reason)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        message = Message(
            msg.topic,
            bytes(msg.payload),
            msg.qos,
            bool(msg.retain),
            msg.mid,
            bool(msg.dup),
            self._session,
            getattr(msg.properties, "MessageExpiryInterval", None),
        )
        if self._manual_ack and msg.qos > 0:
            with self._cond:
                self._unacked.add(msg.mid)
        for topic_filter, _, handler in self._handlers:
            if paho.topic_matches_sub(_match_filter(topic_filter), msg.topic):
                try:
                    handler(message)
                except Exception:
                    # A bad handler must not kill the network thread (and with it the client).
                    log.exception(
                        "handler for %s failed on a message from %s", topic_filter, msg.topic
                    )

    def _notify(self, event: ConnectionEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("connection listener failed")


def _match_filter(topic_filter: str) -> str:
    """The plain filter inside a shared subscription (`$share/group/filter`)."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter
