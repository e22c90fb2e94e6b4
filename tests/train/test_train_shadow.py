"""Shadow adapters in the registry and the store, on SQLite and PostgreSQL: one shadow per
site, audited; shadow verdicts stored once and apart; champion vs challenger on reviews."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from inspector.errors import RegistryRefused
from inspector.protocol import Decision
from inspector.quality import AdapterRef
from inspector.store import Batch, Store
from inspector.store.adapters import AdapterStatus, audit_trail, find_adapter, register_adapter
from inspector.store.models import Inspection, Verdict
from inspector.store.reviews import ReviewInput, record_review
from inspector.store.shadow import (
    ShadowVerdictInput,
    record_shadow_verdicts,
    reviewed_pairs,
    reviewed_shadow_count,
    shadow_adapter,
    shadow_comparison,
    shadow_verdicts,
)
from inspector.train.registry import retire, serving, shadow, unshadow
from tests.core.helpers import make_request, shadow_verdict_for, verdict_for


def _register(store: Store, site: str) -> str:
    with store.db.write() as session:
        return register_adapter(
            session,
            site=site,
            name=site,
            path=f"{site}/adapter.safetensors",
            sha256="a" * 64,
            base_model="b" * 64,
            actor="trainer",
        ).ref


def test_one_shadow_per_site_audited_and_announced_with_its_share(
    store: Store, unique: str
) -> None:
    first, second = _register(store, unique), _register(store, unique)
    change = shadow(store, first, 0.2, "qe-lead", "try it on the line")
    assert change.shadow_assignment is not None and change.shadow_assignment.share == 0.2
    shadow(store, second, 0.5, "qe-lead")
    with store.db.read() as session:
        assert find_adapter(session, first).status is AdapterStatus.CANDIDATE
        current = shadow_adapter(session, unique)
        trail = [
            (a.adapter, a.action, a.to_status, a.actor) for a in audit_trail(session, site=unique)
        ]
    assert current is not None and (current.ref, current.shadow_share) == (second, 0.5)
    assert (first, "shadow", "shadow", "qe-lead") in trail
    assert (first, "unshadow", "candidate", "qe-lead") in trail
    assert serving(store, unique).shadow_assignment is not None
    with pytest.raises(RegistryRefused, match="share"):
        shadow(store, first, 1.5, "qe-lead")
    unshadow(store, second, "qe-lead")
    assert serving(store, unique).shadow is None
    retire(store, first, "qe-lead")
    with pytest.raises(RegistryRefused, match="retired; only a candidate"):
        shadow(store, first, 0.2, "qe-lead")


def test_shadow_verdicts_are_stored_once_apart_and_compared_on_reviewed_inspections(
    store: Store, unique: str
) -> None:
    ref = _register(store, unique)
    shadow(store, ref, 1.0, "qe-lead")
    requests = [make_request(site=unique, audio=None, part_id=f"P{i}") for i in range(3)]
    # The champion says FAIL on all three; the challenger PASS on the first.
    store.answer(Batch(requests=requests, verdicts=[verdict_for(r) for r in requests]))
    adapter = AdapterRef(unique, 1, "a" * 64)

    def shadowed(i: int, verdict: Decision) -> ShadowVerdictInput:
        return shadow_verdict_for(str(requests[i].request_id), unique, adapter, verdict)

    batch = [shadowed(0, Decision.PASS), shadowed(1, Decision.FAIL), shadowed(2, Decision.FAIL)]
    assert record_shadow_verdicts(store.db, batch) == 3
    assert record_shadow_verdicts(store.db, batch[:1]) == 0  # a redelivery keeps the first
    with store.db.read() as session:
        # Nothing that reads an inspection's verdict sees them.
        assert session.scalar(sa.select(sa.func.count()).select_from(Verdict)) == 3
        assert set(session.scalars(sa.select(Inspection.verdict))) == {"FAIL"}
        assert [v.adapter for v in shadow_verdicts(session, [str(requests[0].request_id)])] == [
            f"{unique}@1"
        ]
        assert reviewed_shadow_count(session, unique, 1) == 0
    for request, final in zip(requests[:2], ("FAIL", "FAIL"), strict=True):
        with store.db.write() as session:
            record_review(
                session,
                ReviewInput(uuid.uuid4(), request.request_id, "confirm", final, "qe"),  # type: ignore[arg-type]
            )
    with store.db.read() as session:
        assert reviewed_shadow_count(session, unique, 1) == 2
        pairs = reviewed_pairs(session, unique, 1)
        comparison = shadow_comparison(session, find_adapter(session, ref))
    assert pairs[0].request_id == str(requests[0].request_id) and pairs[0].disagrees
    assert comparison is not None
    assert (comparison.reviewed, comparison.agreeing, comparison.agreement) == (2, 1, 0.5)
    assert comparison.champion_rates.escapes_per_defective_part == 0.0
    assert comparison.challenger_rates.escapes_per_defective_part == 0.5
