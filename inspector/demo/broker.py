"""The demo's broker: the local Mosquitto when one answers, else an embedded amqtt broker.

amqtt speaks MQTT 3.1.1 only, so a demo on it runs every client on 3.1.1: one worker on a
plain subscription (3.1.1 has no shared subscriptions) and no refusal reasons in PUBACKs.
That is enough for one line on one machine; production uses Mosquitto (deploy/).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any

from inspector.errors import DemoFailed
from inspector.settings import BrokerSettings

PROBE_S = 2.0
START_S = 15.0


def answers(host: str, port: int, timeout_s: float = PROBE_S) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """An amqtt broker on 127.0.0.1:port, run on an event loop in a thread of its own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="demo-broker", daemon=True)
        self._started = threading.Event()
        self._broker: Any = None
        self._error: BaseException | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to start(), which raises it as ours
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        from amqtt.broker import Broker

        # amqtt logs every connection at INFO and tracebacks of clients that vanish at ERROR.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        self._broker = Broker(self._config())
        await self._broker.start()

    def start(self) -> None:
        """Listen, or raise InspectorError saying why not."""
        try:
            import amqtt  # noqa: F401
        except ImportError:
            raise DemoFailed(
                "no MQTT broker answers on 127.0.0.1:1883 and the embedded one needs amqtt: "
                "pip install 'inspector[demo]', or start Mosquitto (`mosquitto -d`)"
            ) from None
        self._thread.start()
        if not self._started.wait(START_S) or self._error is not None:
            raise DemoFailed(f"the embedded MQTT broker did not start: {self._error}")

    def stop(self) -> None:
        """Close every connection and the listener."""
        if self._broker is None or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(timeout=START_S)
        except Exception:  # a broker that fails to stop cleanly is still stopped below
            logging.getLogger(__name__).debug("embedded broker shutdown", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_S)


@dataclass
class DemoBroker:
    """Where the demo's clients connect, and the embedded broker when it runs one."""

    settings: BrokerSettings
    embedded: EmbeddedBroker | None = None

    def stop(self) -> None:
        """Stop the embedded broker (a local Mosquitto is left running)."""
        if self.embedded is not None:
            self.embedded.stop()


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def choose_broker(settings: BrokerSettings) -> DemoBroker:
    """The configured broker when it answers; when it is local and silent, an embedded one there."""
    if answers(settings.host, settings.port):
        return DemoBroker(settings)
    if settings.host not in LOCAL_HOSTS or settings.tls.enabled or settings.username:
        # A real broker the user configured is down: say so rather than run somewhere else.
        raise DemoFailed(
            f"no MQTT broker answers on {settings.host}:{settings.port}; start it (or "
            "`mosquitto -d` for a local one) and run the demo again"
        )
    embedded = EmbeddedBroker(settings.port)
    embedded.start()
    return DemoBroker(settings.model_copy(update={"protocol": "3.1.1"}), embedded)
