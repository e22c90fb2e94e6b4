"""Promotion rules on the adapter registry.

A candidate is promoted only when it lets no larger share of the defective parts pass than
the active adapter (or the base) on the same holdout (`Evaluation.refusal`); `force` with a
written reason overrides that and is recorded. A rollback retires the active adapter and
restores the one it replaced. After each change the caller announces what to serve
(`inspector.control`).
"""

from __future__ import annotations

from dataclasses import dataclass

from inspector.errors import Code, RegistryRefused
from inspector.quality import Evaluation, stored_evaluation, tag_of
from inspector.store import Store
from inspector.store.adapters import (
    AdapterRecord,
    AdapterStatus,
    active_adapter,
    find_adapter,
    previously_active,
    set_status,
)


@dataclass(frozen=True)
class Change:
    """What a registry change left active for the site (None: the base model)."""

    site: str
    active: AdapterRecord | None
    replaced: AdapterRecord | None


def baseline_name(active: AdapterRecord | None) -> str:
    """How an evaluation names what the candidate is compared against."""
    return tag_of(active.adapter if active is not None else None)


def judged_evaluation(candidate: AdapterRecord, active: AdapterRecord | None) -> Evaluation:
    """The candidate's stored evaluation, if it compares with what the site serves now."""
    evaluation = stored_evaluation(candidate.metrics)
    if evaluation is None:
        raise RegistryRefused(
            Code.ADAPTER_PROMOTION_REFUSED,
            f"{candidate.ref} has no evaluation this version can read; run `inspector "
            f"adapters eval {candidate.ref}` first",
        )
    against = evaluation.baseline.adapter
    if against != baseline_name(active):
        raise RegistryRefused(
            Code.ADAPTER_PROMOTION_REFUSED,
            f"{candidate.ref} was evaluated against {against}, but the site now serves "
            f"{baseline_name(active)}; run `inspector adapters eval {candidate.ref}` again",
        )
    return evaluation


def gate(candidate: AdapterRecord, active: AdapterRecord | None) -> None:
    """Raise RegistryRefused unless the candidate may replace `active` by the gate's rule."""
    refusal = judged_evaluation(candidate, active).refusal()
    if refusal is not None:
        raise RegistryRefused(
            Code.ADAPTER_PROMOTION_REFUSED,
            f"{refusal}: promotion refused (override with --force --reason)",
        )


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
            gate(candidate, current)
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
