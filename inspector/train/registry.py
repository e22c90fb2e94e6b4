"""Promotion rules on the adapter registry, and the announcement workers hot-swap on.

A candidate is promoted only when its holdout escape rate is no worse than the active
adapter's (or the base model's) on the same holdout; `force` with a written reason
overrides that and is recorded. A rollback retires the active adapter and restores the one
it replaced. After each change the site's retained control topic names what to serve.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from inspector.errors import Code, RegistryRefused
from inspector.mqtt import MqttTransport, PublishTimeout
from inspector.protocol import AdapterAnnouncement, adapter_control_topic, utcnow
from inspector.settings import BrokerSettings
from inspector.store import Store
from inspector.store.adapters import (
    AdapterRecord,
    AdapterStatus,
    active_adapter,
    find_adapter,
    previously_active,
    set_status,
)

BASE = "base"  # how evaluations name "no site adapter"


@dataclass(frozen=True)
class Change:
    """What a registry change left active for the site (None: the base model)."""

    site: str
    active: AdapterRecord | None
    replaced: AdapterRecord | None


def baseline_name(active: AdapterRecord | None) -> str:
    """How an evaluation names what the candidate is compared against."""
    return active.ref if active is not None else BASE


def _escape_rates(candidate: AdapterRecord, active: AdapterRecord | None) -> tuple[float, float]:
    evaluation = candidate.metrics.get("eval")
    if not isinstance(evaluation, dict):
        raise RegistryRefused(
            Code.ADAPTER_PROMOTION_REFUSED,
            f"{candidate.ref} has not been evaluated; run `inspector adapters eval "
            f"{candidate.ref}` first",
        )
    against = evaluation.get("baseline", {}).get("adapter")
    if against != baseline_name(active):
        raise RegistryRefused(
            Code.ADAPTER_PROMOTION_REFUSED,
            f"{candidate.ref} was evaluated against {against}, but the site now serves "
            f"{baseline_name(active)}; run `inspector adapters eval {candidate.ref}` again",
        )
    ours = evaluation["candidate"]["escape_rate"]
    theirs = evaluation["baseline"]["metrics"]["escape_rate"]
    return float(ours or 0.0), float(theirs or 0.0)


def promote(
    store: Store, ref: str, actor: str, *, force: bool = False, reason: str | None = None
) -> Change:
    """Make `ref` the site's active adapter, retiring the one it replaces."""
    if force and not (reason and reason.strip()):
        raise RegistryRefused(
            Code.ADAPTER_PROMOTION_REFUSED, "--force needs --reason: say why the rule is overridden"
        )
    with store.db.write() as session:
        candidate = find_adapter(session, ref)
        if candidate.status is AdapterStatus.ACTIVE:
            raise RegistryRefused(
                Code.ADAPTER_INVALID_TRANSITION, f"{candidate.ref} is already active"
            )
        current = active_adapter(session, candidate.site)
        try:
            ours, theirs = _escape_rates(candidate, current)
            if ours > theirs:
                raise RegistryRefused(
                    Code.ADAPTER_PROMOTION_REFUSED,
                    f"{candidate.ref} lets {ours:.1%} of FAIL parts pass on its holdout, "
                    f"{baseline_name(current)} {theirs:.1%}: promotion refused (override with "
                    "--force --reason)",
                )
        except RegistryRefused:
            if not force:
                raise
        if current is not None:
            set_status(
                session,
                current.ref,
                AdapterStatus.RETIRED,
                action="superseded",
                actor=actor,
                reason=f"replaced by {candidate.ref}",
            )
        promoted = set_status(
            session,
            candidate.ref,
            AdapterStatus.ACTIVE,
            action="promote",
            actor=actor,
            reason=reason,
            forced=force,
        )
    return Change(promoted.site, promoted, current)


def rollback(store: Store, site: str, actor: str, reason: str | None = None) -> Change:
    """Retire the site's active adapter and restore the one it replaced (or the base)."""
    with store.db.write() as session:
        current = active_adapter(session, site)
        if current is None:
            raise RegistryRefused(
                Code.ADAPTER_INVALID_TRANSITION,
                f"site {site!r} has no active adapter to roll back",
            )
        previous = previously_active(session, site, exclude=current.id)
        set_status(
            session,
            current.ref,
            AdapterStatus.RETIRED,
            action="rollback",
            actor=actor,
            reason=reason,
        )
        restored = None
        if previous is not None:
            restored = set_status(
                session,
                previous.ref,
                AdapterStatus.ACTIVE,
                action="restore",
                actor=actor,
                reason=reason or f"rollback of {current.ref}",
            )
    return Change(site, restored, current)


def retire(store: Store, ref: str, actor: str, reason: str | None = None) -> AdapterRecord:
    """Retire a candidate; an active adapter leaves through `rollback` or a promotion."""
    with store.db.write() as session:
        adapter = find_adapter(session, ref)
        if adapter.status is AdapterStatus.ACTIVE:
            raise RegistryRefused(
                Code.ADAPTER_INVALID_TRANSITION,
                f"{adapter.ref} is active; use `inspector adapters rollback --site "
                f"{adapter.site}` or promote another",
            )
        if adapter.status is AdapterStatus.RETIRED:
            raise RegistryRefused(
                Code.ADAPTER_INVALID_TRANSITION, f"{adapter.ref} is already retired"
            )
        return set_status(
            session, adapter.ref, AdapterStatus.RETIRED, action="retire", actor=actor, reason=reason
        )


def announcement(site: str, active: AdapterRecord | None) -> AdapterAnnouncement:
    """The retained control message naming what the site's workers must serve."""
    if active is None:
        return AdapterAnnouncement(site=site, announced_at=utcnow())
    return AdapterAnnouncement(
        site=site,
        name=active.name,
        version=active.version,
        sha256=active.sha256,
        announced_at=utcnow(),
    )


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
