"""Shadow adapters in the store: the site's shadow, its verdicts, and the reviewed pairs.

A shadow adapter is a registry version with status `shadow` and a share (at most one per
site). Its verdicts live in `shadow_verdicts`, apart from `verdicts`, so the queue, the
tallies, the numbers and every re-published answer keep reading the inspection's own
verdict. A pair for champion vs challenger is a reviewed inspection with a shadow verdict:
the inspection's verdict (the champion's), the shadow verdict and the label that counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from inspector.protocol import utcnow
from inspector.quality import AdapterRef, Decision, tag_of
from inspector.quality.shadow import ShadowComparison, ShadowPair
from inspector.quality.shadow import compare as compare_pairs
from inspector.store.adapters import (
    AdapterRecord,
    AdapterStatus,
    _audit,
    _record,
    _row,
    active_adapter,
)
from inspector.store.database import Database
from inspector.store.filters import VerdictFilter, reviewed_by
from inspector.store.models import Adapter, Inspection, Review, ShadowVerdict


@dataclass(frozen=True, slots=True)
class ShadowVerdictInput:
    """A shadow adapter's verdict on one live request, as a worker hands it to the store."""

    request_id: str
    site: str
    adapter: AdapterRef
    model: str
    prompt_version: str
    verdict: Decision
    confidence: float
    p_pass: float
    worker_id: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class StoredShadowVerdict:
    """One stored shadow verdict, as the review app and exports show it."""

    request_id: str
    adapter: str  # name@version
    verdict: str
    confidence: float
    p_pass: float
    worker_id: str
    decided_at: datetime

    def export_record(self) -> dict[str, Any]:
        """The shadow verdict as an export's `shadow_verdicts` entry (JSON values)."""
        return {
            "adapter": self.adapter,
            "verdict": self.verdict,
            "confidence": self.confidence,
            "p_pass": self.p_pass,
            "worker_id": self.worker_id,
            "decided_at": self.decided_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ReviewedPair:
    """A reviewed inspection judged by the champion and by the shadow adapter."""

    inspection_id: int
    request_id: str
    pair: ShadowPair
    champion_p_pass: float | None
    challenger_p_pass: float

    @property
    def disagrees(self) -> bool:
        """Whether the two adapters decided differently."""
        return self.pair.champion is not self.pair.challenger


# --- the registry's shadow ------------------------------------------------------------------


def shadow_adapters(session: Session, sites: Sequence[str] = ()) -> dict[str, AdapterRecord]:
    """The shadow adapter of each site (of `sites`, or of every site), by site."""
    stmt = sa.select(Adapter).where(Adapter.status == AdapterStatus.SHADOW.value)
    if sites:
        stmt = stmt.where(Adapter.site.in_(list(sites)))
    return {row.site: _record(row) for row in session.scalars(stmt.order_by(Adapter.id))}


def shadow_adapter(session: Session, site: str) -> AdapterRecord | None:
    """The site's shadow adapter, if it has one."""
    return shadow_adapters(session, [site]).get(site)


def set_shadow(
    session: Session,
    ref: str,
    share: float | None,
    *,
    action: str,
    actor: str,
    reason: str | None = None,
) -> AdapterRecord:
    """Put `ref` in shadow at `share`, or (share None) back to candidate; audited."""
    row = _row(session, ref, lock=True)
    before = row.status
    row.status = (AdapterStatus.SHADOW if share is not None else AdapterStatus.CANDIDATE).value
    row.shadow_share = share
    row.updated_at = utcnow()
    _audit(session, row, action, before, actor, reason, False, {"shadow_share": share})
    session.flush()
    return _record(row)


# --- shadow verdicts ------------------------------------------------------------------------


def record_shadow_verdicts(db: Database, verdicts: Sequence[ShadowVerdictInput]) -> int:
    """Store shadow verdicts once each (a redelivered request keeps its first); how many new."""
    if not verdicts:
        return 0
    with db.write() as session:
        keys = {v.request_id for v in verdicts}
        stored = {
            (r.request_id, r.model, r.adapter, r.adapter_version, r.prompt_version)
            for r in session.execute(
                sa.select(
                    ShadowVerdict.request_id,
                    ShadowVerdict.model,
                    ShadowVerdict.adapter,
                    ShadowVerdict.adapter_version,
                    ShadowVerdict.prompt_version,
                ).where(ShadowVerdict.request_id.in_(keys))
            )
        }
        added = 0
        for v in verdicts:
            key = (v.request_id, v.model, v.adapter.name, v.adapter.version, v.prompt_version)
            if key in stored:
                continue
            stored.add(key)
            session.add(
                ShadowVerdict(
                    request_id=v.request_id,
                    site=v.site,
                    adapter=v.adapter.name,
                    adapter_version=v.adapter.version,
                    adapter_sha256=v.adapter.sha256,
                    model=v.model,
                    prompt_version=v.prompt_version,
                    verdict=v.verdict.value,
                    confidence=v.confidence,
                    p_pass=v.p_pass,
                    worker_id=v.worker_id,
                    decided_at=v.decided_at,
                )
            )
            added += 1
    return added


def shadow_verdicts(session: Session, request_ids: Sequence[str]) -> list[StoredShadowVerdict]:
    """The shadow verdicts on these requests, oldest first."""
    if not request_ids:
        return []
    stmt = (
        sa.select(ShadowVerdict)
        .where(ShadowVerdict.request_id.in_([str(r) for r in request_ids]))
        .order_by(ShadowVerdict.id)
    )
    return [
        StoredShadowVerdict(
            request_id=row.request_id,
            adapter=f"{row.adapter}@{row.adapter_version}",
            verdict=row.verdict,
            confidence=row.confidence,
            p_pass=row.p_pass,
            worker_id=row.worker_id,
            decided_at=row.decided_at,
        )
        for row in session.scalars(stmt)
    ]


# --- champion vs challenger -----------------------------------------------------------------


def _reviewed(name: str, version: int) -> sa.Select[Inspection, ShadowVerdict, str]:
    return (
        sa.select(Inspection, ShadowVerdict, Review.final_verdict)
        .join(ShadowVerdict, ShadowVerdict.request_id == Inspection.request_id)
        .join(Review, Review.id == Inspection.review_id)
        .where(
            ShadowVerdict.adapter == name,
            ShadowVerdict.adapter_version == version,
            Inspection.verdict.is_not(None),
        )
    )


def reviewed_pairs(session: Session, name: str, version: int) -> list[ReviewedPair]:
    """Reviewed inspections judged by shadow adapter `name@version`: disagreements first."""
    out = []
    stmt = _reviewed(name, version).order_by(Inspection.captured_at.desc(), Inspection.id.desc())
    for inspection, shadow, final in session.execute(stmt):
        out.append(
            ReviewedPair(
                inspection_id=inspection.id,
                request_id=inspection.request_id,
                pair=ShadowPair(
                    label="PASS" if final == "PASS" else "FAIL",
                    champion=Decision(inspection.verdict or Decision.REVIEW),
                    challenger=Decision(shadow.verdict),
                ),
                champion_p_pass=inspection.p_pass,
                challenger_p_pass=shadow.p_pass,
            )
        )
    # Disagreements first: they are what a person should look at before a promotion.
    out.sort(key=lambda p: not p.disagrees)
    return out


def disagrees_with_shadow() -> sa.ColumnElement[bool]:
    """Inspections a site's shadow adapter decided otherwise than their own verdict.

    The SQL of `ReviewedPair.disagrees` (the champion's decision is not the challenger's),
    for the shadow adapters the registry holds now, reviewed or not: the queue's shadow tab
    sends a person to exactly the inspections where the two rates can differ, and whose
    reviews the promotion gate counts. The set starts from the shadow verdicts (a share of
    the traffic), not from each inspection in turn.
    """
    champion = aliased(Inspection)
    disagreeing = (
        sa.select(ShadowVerdict.request_id)
        .join(
            Adapter,
            sa.and_(
                Adapter.name == ShadowVerdict.adapter,
                Adapter.version == ShadowVerdict.adapter_version,
            ),
        )
        .join(champion, champion.request_id == ShadowVerdict.request_id)
        .where(
            Adapter.status == AdapterStatus.SHADOW.value,
            champion.verdict.is_not(None),
            champion.verdict != ShadowVerdict.verdict,
        )
    )
    return Inspection.request_id.in_(disagreeing)


def unreviewed_disagreements(session: Session, scope: VerdictFilter, user_id: int) -> int:
    """How many inspections in `scope` the shadow tab lists that this user has not reviewed."""
    stmt = (
        sa.select(sa.func.count())
        .select_from(Inspection)
        .where(*scope.on_latest(), ~reviewed_by(user_id), disagrees_with_shadow())
    )
    return int(session.scalar(stmt) or 0)


def reviewed_shadow_count(session: Session, name: str, version: int) -> int:
    """How many reviewed inspections shadow adapter `name@version` judged."""
    stmt = _reviewed(name, version).with_only_columns(sa.func.count(sa.distinct(Inspection.id)))
    return int(session.scalar(stmt) or 0)


def shadow_comparison(session: Session, record: AdapterRecord) -> ShadowComparison | None:
    """Champion vs `record` on the reviewed live inspections it judged in the shadow, if any."""
    pairs = reviewed_pairs(session, record.name, record.version)
    if not pairs:
        return None
    active = shadow_champion(session, record.site)
    return compare_pairs(active, record.ref, (p.pair for p in pairs))


def shadow_champion(session: Session, site: str) -> str:
    """How a comparison names the champion: the site's active adapter now, or the base."""
    active = active_adapter(session, site)
    return tag_of(active.adapter if active is not None else None)
