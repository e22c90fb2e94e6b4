"""The adapter control topic: telling a site's workers which adapter version to serve.

The registry (`inspector.train.registry`) decides what a site serves; this module says it
on the broker, so training and the registry rules stay free of MQTT.
"""

from __future__ import annotations

import uuid

from inspector.mqtt import MqttTransport, PublishTimeout
from inspector.protocol import (
    AdapterAnnouncement,
    ShadowAssignment,
    adapter_control_topic,
    utcnow,
)
from inspector.quality import AdapterRef
from inspector.settings import BrokerSettings


def announcement(
    site: str, active: AdapterRef | None, shadow: ShadowAssignment | None = None
) -> AdapterAnnouncement:
    """The retained control message naming what the site's workers must serve (and shadow)."""
    return AdapterAnnouncement.of(site, active, utcnow(), shadow)


def publish_announcement(
    broker: BrokerSettings, message: AdapterAnnouncement, timeout: float = 10.0
) -> None:
    """Publish `message` retained on its site's control topic and wait for the broker's ack."""
    client_id = f"inspector-adapters-{uuid.uuid4().hex[:12]}"
    with MqttTransport(broker, client_id, clean_start=True) as transport:
        if not transport.wait_connected(timeout):
            raise PublishTimeout(
                f"cannot reach the broker at {broker.host}:{broker.port} to announce the "
                f"adapter of site {message.site}; the registry is updated and workers pick "
                "it up at their next start, or run `inspector adapters announce`"
            )
        transport.publish_and_wait(
            adapter_control_topic(message.site), message.to_payload(), timeout, retain=True
        )


def announce(
    broker: BrokerSettings,
    site: str,
    active: AdapterRef | None,
    shadow: ShadowAssignment | None = None,
) -> None:
    """Tell the site's workers to serve `active` (None: no site adapter) and `shadow`."""
    publish_announcement(broker, announcement(site, active, shadow))
