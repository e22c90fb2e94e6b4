"""The adapter registry: site LoRA versions (candidate → active → retired) and their audit trail.

The `adapters` table is the one registry; files live in `model.adapters_dir`. Every change of
status writes an audit row (who, when, why, the metrics it was judged on) in the same
transaction. The rules about *when* a change is allowed live in `inspector.train.registry`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import Code, RegistryRefused
from inspector.protocol import utcnow
from inspector.quality import AdapterRef
from inspector.store.models import Adapter, AdapterAudit

_REF = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]{0,63})(?:@v?(?P<version>[0-9]{1,9}))?$")


class AdapterStatus(StrEnum):
    CANDIDATE = "candidate"
    # A candidate judging a share of its site's live requests beside the active adapter;
    # at most one per site (`inspector.train.registry.shadow`).
    SHADOW = "shadow"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class AdapterRecord:
    """One adapter version as the registry holds it."""

    id: int
    site: str
    name: str
    version: int
    path: str
    sha256: str
    base_model: str
    snapshot_id: int | None
    status: AdapterStatus
    metrics: dict[str, Any]
    card: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    shadow_share: float | None = None  # while shadow: the share of live requests it judges

    @property
    def ref(self) -> str:
        """`name@version`, how the CLI and logs name one adapter version."""
        return self.adapter.tag

    @property
    def adapter(self) -> AdapterRef:
        """The version's identity, as workers load it: name, version, file sha256."""
        return AdapterRef(self.name, self.version, self.sha256)

    def file(self, adapters_dir: Path) -> Path:
        """Where the adapter lies: a relative registry path is under `model.adapters_dir`."""
        path = Path(self.path)
        return path if path.is_absolute() else adapters_dir / path


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One registry change."""

    adapter: str  # name@version
    site: str
    action: str
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    forced: bool
    metrics: dict[str, Any]
    at: datetime


def _record(row: Adapter) -> AdapterRecord:
    return AdapterRecord(
        id=row.id,
        site=row.site,
        name=row.name,
        version=row.version,
        path=row.path,
        sha256=row.sha256,
        base_model=row.base_model,
        snapshot_id=row.snapshot_id,
        status=AdapterStatus(row.status),
        metrics=dict(row.metrics),
        card=dict(row.card),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        shadow_share=row.shadow_share,
    )


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split `name` or `name@version` (also `name@v3`); refuse anything else."""
    match = _REF.fullmatch(ref.strip())
    if match is None:
        raise RegistryRefused(
            Code.ADAPTER_NOT_FOUND,
            f"{ref!r} is not an adapter reference; write NAME or NAME@VERSION (e.g. osaka@3)",
        )
    version = match.group("version")
    return match.group("name"), int(version) if version is not None else None


def register_adapter(
    session: Session,
    *,
    site: str,
    name: str,
    path: str,
    sha256: str,
    base_model: str,
    actor: str,
    snapshot_id: int | None = None,
    card: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> AdapterRecord:
    """Add the next version of adapter `name` as a candidate; a name belongs to one site."""
    owner = session.scalar(sa.select(Adapter.site).where(Adapter.name == name).limit(1))
    if owner is not None and owner != site:
        raise RegistryRefused(
            Code.ADAPTER_INVALID_TRANSITION,
            f"adapter name {name!r} already belongs to site {owner!r}; choose another name",
        )
    latest = session.scalar(sa.select(sa.func.max(Adapter.version)).where(Adapter.name == name))
    now = utcnow()
    row = Adapter(
        site=site,
        name=name,
        version=(latest or 0) + 1,
        path=path,
        sha256=sha256,
        base_model=base_model,
        snapshot_id=snapshot_id,
        status=AdapterStatus.CANDIDATE.value,
        metrics=metrics or {},
        card=card or {},
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    _audit(session, row, "register", None, actor, None, False, row.metrics)
    return _record(row)


def _row(session: Session, ref: str, lock: bool = False) -> Adapter:
    name, version = parse_ref(ref)
    stmt = sa.select(Adapter).where(Adapter.name == name)
    if version is not None:
        stmt = stmt.where(Adapter.version == version)
    stmt = stmt.order_by(Adapter.version.desc()).limit(1)
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise RegistryRefused(Code.ADAPTER_NOT_FOUND, f"no adapter {ref!r} in the registry")
    return row


def find_adapter(session: Session, ref: str) -> AdapterRecord:
    """The adapter `name@version`, or the newest version of `name`; RegistryRefused if none."""
    return _record(_row(session, ref))


def get_adapter(session: Session, adapter_id: int) -> AdapterRecord:
    """The adapter with this registry id."""
    row = session.get(Adapter, adapter_id)
    if row is None:
        raise RegistryRefused(Code.ADAPTER_NOT_FOUND, f"no adapter with id {adapter_id}")
    return _record(row)


def list_adapters(session: Session, site: str | None = None) -> list[AdapterRecord]:
    """Every adapter version (of one site), by site, name and version."""
    stmt = sa.select(Adapter).order_by(Adapter.site, Adapter.name, Adapter.version)
    if site is not None:
        stmt = stmt.where(Adapter.site == site)
    return [_record(row) for row in session.scalars(stmt)]


def active_adapters(session: Session, sites: Sequence[str] = ()) -> dict[str, AdapterRecord]:
    """The active adapter of each site (of `sites`, or of every site), by site."""
    stmt = sa.select(Adapter).where(Adapter.status == AdapterStatus.ACTIVE.value)
    if sites:
        stmt = stmt.where(Adapter.site.in_(list(sites)))
    return {row.site: _record(row) for row in session.scalars(stmt.order_by(Adapter.id))}


def active_adapter(session: Session, site: str) -> AdapterRecord | None:
    """The site's active adapter, if it has one."""
    return active_adapters(session, [site]).get(site)


def record_metrics(
    session: Session, ref: str, metrics: dict[str, Any], actor: str, reason: str | None = None
) -> AdapterRecord:
    """Replace an adapter's metrics (e.g. after an evaluation), with an audit row."""
    row = _row(session, ref, lock=True)
    row.metrics = metrics
    row.updated_at = utcnow()
    _audit(session, row, "evaluate", row.status, actor, reason, False, metrics)
    session.flush()
    return _record(row)


def set_status(
    session: Session,
    ref: str,
    status: AdapterStatus,
    *,
    action: str,
    actor: str,
    reason: str | None = None,
    forced: bool = False,
    metrics: dict[str, Any] | None = None,
) -> AdapterRecord:
    """Move one adapter to `status`, recording who did it, why, and on which metrics."""
    row = _row(session, ref, lock=True)
    before = row.status
    row.status = status.value
    row.updated_at = utcnow()
    _audit(
        session,
        row,
        action,
        before,
        actor,
        reason,
        forced,
        row.metrics if metrics is None else metrics,
    )
    session.flush()
    return _record(row)


def _audit(
    session: Session,
    row: Adapter,
    action: str,
    before: str | None,
    actor: str,
    reason: str | None,
    forced: bool,
    metrics: dict[str, Any],
) -> None:
    session.add(
        AdapterAudit(
            adapter_id=row.id,
            site=row.site,
            action=action,
            from_status=before,
            to_status=row.status,
            actor=actor,
            reason=reason,
            forced=forced,
            metrics=metrics,
            at=utcnow(),
        )
    )


def previously_active(session: Session, site: str, exclude: int | None) -> AdapterRecord | None:
    """The adapter that was the site's active one before the current, for a rollback."""
    stmt = (
        sa.select(Adapter)
        .join(AdapterAudit, AdapterAudit.adapter_id == Adapter.id)
        .where(
            AdapterAudit.site == site,
            AdapterAudit.from_status == AdapterStatus.ACTIVE.value,
            AdapterAudit.to_status == AdapterStatus.RETIRED.value,
            AdapterAudit.action == "superseded",
        )
        .order_by(AdapterAudit.id.desc())
    )
    if exclude is not None:
        stmt = stmt.where(Adapter.id != exclude)
    row = session.scalars(stmt.limit(1)).first()
    return _record(row) if row is not None else None


def audit_trail(
    session: Session, site: str | None = None, ref: str | None = None
) -> list[AuditRecord]:
    """Registry changes, oldest first, for one site or one adapter (name or name@version)."""
    stmt = sa.select(AdapterAudit, Adapter.name, Adapter.version).join(
        Adapter, AdapterAudit.adapter_id == Adapter.id
    )
    if site is not None:
        stmt = stmt.where(AdapterAudit.site == site)
    if ref is not None:
        name, version = parse_ref(ref)
        stmt = stmt.where(Adapter.name == name)
        if version is not None:
            stmt = stmt.where(Adapter.version == version)
    out = []
    for audit, name, version in session.execute(stmt.order_by(AdapterAudit.id)):
        out.append(
            AuditRecord(
                adapter=f"{name}@{version}",
                site=audit.site,
                action=audit.action,
                from_status=audit.from_status,
                to_status=audit.to_status,
                actor=audit.actor,
                reason=audit.reason,
                forced=audit.forced,
                metrics=dict(audit.metrics),
                at=audit.at,
            )
        )
    return out
