"""Promotion rules on the adapter registry.

A candidate is promoted only when it lets no larger share of the defective parts pass than
the active adapter (or the base) on the same holdout (`Evaluation.refusal`) and, where the
site asks for it (`sites.<site>.min_shadow_reviews`), after it judged enough reviewed live
inspections in the shadow; `force` with a written reason overrides both and is recorded. A
candidate in `shadow` judges a share of its site's live requests again (one per site). A
rollback retires the active adapter and restores the one it replaced. After each change the
caller announces what to serve (`inspector.control`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inspector.errors import Code, RegistryRefused
from inspector.protocol import ShadowAssignment
from inspector.quality import Evaluation, stored_evaluation, tag_of
from inspector.quality.shadow import shadow_refusal
from inspector.store import Store
from inspector.store.adapters import (
    AdapterRecord,
    AdapterStatus,
    active_adapter,
    find_adapter,
    previously_active,
    set_status,
)
from inspector.store.shadow import reviewed_shadow_count, set_shadow, shadow_adapter


@dataclass(frozen=True)
class Change:
    """What a registry change left active for the site (None: the base model)."""

    site: str
    active: AdapterRecord | None
    replaced: AdapterRecord | None
    shadow: AdapterRecord | None = None  # the site's shadow adapter after the change

    @property
    def shadow_assignment(self) -> ShadowAssignment | None:
        """The shadow as the control topic announces it."""
        return assignment(self.shadow)


def assignment(record: AdapterRecord | None) -> ShadowAssignment | None:
    """A shadow adapter as the control topic announces it (None: not in shadow)."""
    if record is None or record.status is not AdapterStatus.SHADOW:
        return None
    return ShadowAssignment(
        name=record.name,
        version=record.version,
        sha256=record.sha256,
        share=record.shadow_share or 1.0,
    )


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


def gate(
    candidate: AdapterRecord,
    active: AdapterRecord | None,
    shadow_reviews: int = 0,
    min_shadow_reviews: int = 0,
) -> None:
    """Raise RegistryRefused unless the candidate may replace `active` by the gate's rules."""
    refusal = judged_evaluation(candidate, active).refusal() or shadow_refusal(
        candidate.ref, shadow_reviews, min_shadow_reviews
    )
    if refusal is not None:
        raise RegistryRefused(
            Code.ADAPTER_PROMOTION_REFUSED,
            f"{refusal}: promotion refused (override with --force --reason)",
        )


def promote(
    store: Store,
    ref: str,
    actor: str,
    *,
    force: bool = False,
    reason: str | None = None,
    min_shadow_reviews: Callable[[str], int] = lambda site: 0,
) -> Change:
    """Make `ref` the site's active adapter, retiring the one it replaces.

    `min_shadow_reviews(site)` is the site's required number of reviewed inspections the
    candidate judged in the shadow (0: none required).
    """
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
        required = min_shadow_reviews(candidate.site)
        reviewed = (
            reviewed_shadow_count(session, candidate.name, candidate.version) if required else 0
        )
        try:
            gate(candidate, current, reviewed, required)
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
        shadowing = shadow_adapter(session, promoted.site)
    return Change(promoted.site, promoted, current, shadowing)


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
        shadowing = shadow_adapter(session, site)
    return Change(site, restored, current, shadowing)


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


def serving(store: Store, site: str) -> Change:
    """What the registry says the site serves now, and shadows: what to announce."""
    with store.db.read() as session:
        return Change(site, active_adapter(session, site), None, shadow_adapter(session, site))


def shadow(store: Store, ref: str, share: float, actor: str, reason: str | None = None) -> Change:
    """Put candidate `ref` in shadow for its site at `share`; the site's other shadow stops."""
    if not 0 < share <= 1:
        raise RegistryRefused(
            Code.ADAPTER_INVALID_TRANSITION,
            f"--share {share} is not a share of requests; give one in (0, 1], e.g. 0.2",
        )
    with store.db.write() as session:
        candidate = find_adapter(session, ref)
        if candidate.status not in (AdapterStatus.CANDIDATE, AdapterStatus.SHADOW):
            raise RegistryRefused(
                Code.ADAPTER_INVALID_TRANSITION,
                f"{candidate.ref} is {candidate.status.value}; only a candidate can judge in "
                "the shadow",
            )
        before = shadow_adapter(session, candidate.site)
        if before is not None and before.id != candidate.id:
            set_shadow(
                session,
                before.ref,
                None,
                action="unshadow",
                actor=actor,
                reason=f"replaced in the shadow by {candidate.ref}",
            )
        shadowing = set_shadow(
            session, candidate.ref, share, action="shadow", actor=actor, reason=reason
        )
        active = active_adapter(session, candidate.site)
    return Change(shadowing.site, active, None, shadowing)


def unshadow(store: Store, ref: str, actor: str, reason: str | None = None) -> Change:
    """Stop `ref` judging in the shadow; it stays a candidate with its shadow verdicts."""
    with store.db.write() as session:
        adapter = find_adapter(session, ref)
        if adapter.status is not AdapterStatus.SHADOW:
            raise RegistryRefused(
                Code.ADAPTER_INVALID_TRANSITION, f"{adapter.ref} is not in the shadow"
            )
        set_shadow(session, adapter.ref, None, action="unshadow", actor=actor, reason=reason)
        active = active_adapter(session, adapter.site)
    return Change(adapter.site, active, None, None)
