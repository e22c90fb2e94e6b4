"""SQLAlchemy 2.0 table models: inspections, media, verdicts, reviews, adapters, rejections.

Also the adapter audit trail and the dataset snapshots adapters are trained on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utc(value: datetime) -> datetime:
    """A time as an aware UTC datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A time stored in UTC and always read back as an aware UTC datetime.

    The column is `DateTime(timezone=True)` as before (timestamptz on PostgreSQL, text on
    SQLite), so the schema does not change. SQLite keeps no zone and hands back naive
    times; times are converted to UTC on the way in, so a naive one read back is UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """The time in UTC, as the database keeps it."""
        return utc(value) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """The stored time as an aware UTC datetime."""
        return utc(value) if value is not None else None


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {  # noqa: RUF012
        datetime: UtcDateTime(),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
    }


class Media(Base):
    """A content-addressed blob on disk: the row holds its hash and size, never its bytes."""

    __tablename__ = "media"

    sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8))  # image | audio
    content_type: Mapped[str] = mapped_column(sa.String(32))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    path: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime]


class Inspection(Base):
    """One request from a station, exactly once per request_id."""

    __tablename__ = "inspections"
    __table_args__ = (
        sa.Index(None, "site", "line", "station", "captured_at"),
        sa.Index(None, "received_at"),
        sa.Index(None, "captured_at", "id"),  # the review queue's keyset order
        # The queue's tabs and counts: one index range per latest verdict (and site), in order.
        # Confidence and adapter last: a tab walked newest first checks them in the index
        # (PostgreSQL would otherwise fetch every row of the tab to learn that none matches).
        sa.Index(None, "verdict", "captured_at", "id", "confidence", "adapter"),
        sa.Index(None, "site", "verdict", "captured_at", "id"),
        sa.Index(None, "site", "captured_at", "id"),  # the All tab of one site
        sa.Index(None, "verdict", "id"),  # the PASS audit count: narrow entries to scan
        # The REVIEW tab's order (most uncertain first), and a confidence range on any tab.
        sa.Index(None, "verdict", "confidence", "captured_at", "id"),
        # An adapter on any tab, with or without a confidence range.
        sa.Index(None, "verdict", "adapter", "confidence", "captured_at", "id"),
        # A station or a line without a site: the tab counts read this index alone.
        sa.Index(None, "verdict", "station", "line", "id"),
        # The part-id prefix search (LIKE 'P12%'), with what the tab counts ask of each row
        # besides. PostgreSQL needs the pattern operator class unless the database's collation
        # is C. On SQLite, whose LIKE ignores ASCII case, the migration builds the part id
        # COLLATE NOCASE, the one its LIKE can use (it reflects the same).
        sa.Index(
            None, "part_id", "site", "verdict", postgresql_ops={"part_id": "varchar_pattern_ops"}
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    site: Mapped[str] = mapped_column(sa.String(64))
    line: Mapped[str] = mapped_column(sa.String(64))
    station: Mapped[str] = mapped_column(sa.String(64))
    part_id: Mapped[str] = mapped_column(sa.String(128))
    captured_at: Mapped[datetime]
    received_at: Mapped[datetime]
    operator: Mapped[str | None] = mapped_column(sa.String(64))
    note: Mapped[str | None] = mapped_column(sa.Text)
    adapter_hint: Mapped[str | None] = mapped_column(sa.String(64))
    # Kept by store.tallies on every verdict and review: the latest of each ("the latest
    # counts") without asking each time whether a newer row exists. No foreign keys: the
    # verdicts and reviews tables already point here.
    verdict_id: Mapped[int | None]
    verdict: Mapped[str | None] = mapped_column(sa.String(8))
    # The latest verdict's own columns the queue filters and orders by, so a page and its
    # counts read this table alone (adapter_hint is what the station asked for instead).
    confidence: Mapped[float | None]
    p_pass: Mapped[float | None]
    adapter: Mapped[str | None] = mapped_column(sa.String(64))
    review_id: Mapped[int | None]

    media: Mapped[list[InspectionMedia]] = relationship(
        order_by="InspectionMedia.position", cascade="all, delete-orphan", lazy="selectin"
    )
    verdicts: Mapped[list[Verdict]] = relationship(
        back_populates="inspection", order_by="Verdict.id", cascade="all, delete-orphan"
    )


class InspectionMedia(Base):
    """Which blobs belong to an inspection, in order (photos first, then the voice note)."""

    __tablename__ = "inspection_media"

    inspection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("inspections.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(8))  # image | audio
    sha256: Mapped[str] = mapped_column(sa.ForeignKey("media.sha256"), index=True)


class Verdict(Base):
    """A model decision on an inspection; one per (model, adapter, prompt version)."""

    __tablename__ = "verdicts"
    __table_args__ = (
        sa.UniqueConstraint("inspection_id", "model", "adapter", "prompt_version"),
        sa.Index(None, "verdict", "decided_at"),
        sa.Index(None, "verdict", "inspection_id"),  # review-queue counts without the table
        sa.Index(None, "rationale_state", "decided_at"),  # rationales pending too long
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    verdict: Mapped[str] = mapped_column(sa.String(8))
    confidence: Mapped[float]
    p_pass: Mapped[float]
    rationale: Mapped[str] = mapped_column(sa.Text)
    # protocol.RationaleState: pending until the rationale message updates the row.
    rationale_state: Mapped[str] = mapped_column(sa.String(16), server_default="produced")
    # Why a not_produced rationale was not: a stable code (errors.Code), else None.
    rationale_reason: Mapped[str | None] = mapped_column(sa.String(64))
    transcript: Mapped[str | None] = mapped_column(sa.Text)
    defects: Mapped[list[Any]]
    model: Mapped[str] = mapped_column(sa.String(128))
    adapter: Mapped[str] = mapped_column(sa.String(64))
    adapter_version: Mapped[int | None]
    adapter_fallback: Mapped[bool]
    prompt_version: Mapped[str] = mapped_column(sa.String(32))
    # protocol.Judgement.note_disagrees: the operator's note contradicts the verdict.
    note_disagrees: Mapped[bool] = mapped_column(server_default=sa.false())
    worker_id: Mapped[str] = mapped_column(sa.String(64))
    latency_ms: Mapped[float]
    decided_at: Mapped[datetime]

    inspection: Mapped[Inspection] = relationship(back_populates="verdicts", lazy="joined")


class Review(Base):
    """An append-only human decision on an inspection."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    inspection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    verdict_id: Mapped[int | None] = mapped_column(sa.ForeignKey("verdicts.id"))
    # confirm (the model's PASS/FAIL kept) | override (the other one) | answer (of a REVIEW
    # verdict) | withdraw (the answer before it no longer counts; final_verdict says which)
    decision: Mapped[str] = mapped_column(sa.String(16))
    final_verdict: Mapped[str] = mapped_column(sa.String(8))  # PASS | FAIL
    defect_type: Mapped[str | None] = mapped_column(sa.String(64))
    comment: Mapped[str | None] = mapped_column(sa.Text)
    reviewer: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]
    via: Mapped[str | None] = mapped_column(sa.String(16))  # page | bulk | api | demo | None


class Adapter(Base):
    """A site LoRA adapter version in the registry: candidate → active → retired.

    `path` is the safetensors file, relative to `model.adapters_dir` when it lies inside.
    """

    __tablename__ = "adapters"
    __table_args__ = (
        sa.UniqueConstraint("name", "version"),
        sa.Index(None, "site", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int]
    path: Mapped[str] = mapped_column(sa.String(255))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    base_model: Mapped[str] = mapped_column(sa.String(64))  # sha256 of the base weights
    snapshot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dataset_snapshots.id"))
    status: Mapped[str] = mapped_column(sa.String(16))
    # While `status` is shadow: the share of the site's live requests it judges again.
    shadow_share: Mapped[float | None]
    metrics: Mapped[dict[str, Any]]
    card: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ShadowVerdict(Base):
    """A shadow adapter's verdict on a live inspection: stored, never published nor counted.

    Kept out of `verdicts` so that nothing reading an inspection's verdict can take it for
    one. It names its inspection by request_id, without a foreign key: it is written after
    the inspection's own commit, and a request whose commit failed leaves a row joining none.
    """

    __tablename__ = "shadow_verdicts"
    __table_args__ = (
        sa.UniqueConstraint("request_id", "model", "adapter", "adapter_version", "prompt_version"),
        sa.Index(None, "adapter", "adapter_version", "request_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(36))
    site: Mapped[str] = mapped_column(sa.String(64))
    adapter: Mapped[str] = mapped_column(sa.String(64))
    adapter_version: Mapped[int]
    adapter_sha256: Mapped[str] = mapped_column(sa.String(64))
    model: Mapped[str] = mapped_column(sa.String(128))
    prompt_version: Mapped[str] = mapped_column(sa.String(32))
    verdict: Mapped[str] = mapped_column(sa.String(8))
    confidence: Mapped[float]
    p_pass: Mapped[float]
    worker_id: Mapped[str] = mapped_column(sa.String(64))
    decided_at: Mapped[datetime]


class AdapterAudit(Base):
    """One change to the registry: who, when, why, and the metrics it was judged on."""

    __tablename__ = "adapter_audit"
    __table_args__ = (sa.Index(None, "site", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    adapter_id: Mapped[int] = mapped_column(sa.ForeignKey("adapters.id"), index=True)
    site: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(16))
    from_status: Mapped[str | None] = mapped_column(sa.String(16))
    to_status: Mapped[str] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    forced: Mapped[bool]
    metrics: Mapped[dict[str, Any]]
    at: Mapped[datetime]


class DatasetSnapshot(Base):
    """A frozen training set: which reviewed inspections, with which labels, split how."""

    __tablename__ = "dataset_snapshots"
    __table_args__ = (sa.Index(None, "site", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(sa.String(64))
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    since: Mapped[datetime | None]
    until: Mapped[datetime | None]
    holdout_share: Mapped[float]
    counts: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]

    items: Mapped[list[DatasetItem]] = relationship(
        order_by="DatasetItem.position", cascade="all, delete-orphan", lazy="selectin"
    )


class DatasetItem(Base):
    """One reviewed inspection in a snapshot, with the label and target it was frozen with."""

    __tablename__ = "dataset_items"

    snapshot_id: Mapped[int] = mapped_column(
        sa.ForeignKey("dataset_snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(sa.ForeignKey("inspections.id"), index=True)
    review_id: Mapped[int] = mapped_column(sa.ForeignKey("reviews.id"))
    split: Mapped[str] = mapped_column(sa.String(8))  # train | holdout
    label: Mapped[str] = mapped_column(sa.String(8))  # PASS | FAIL
    target: Mapped[str] = mapped_column(sa.Text)


class Rejection(Base):
    """A refused request: why, and the payload itself up to a size limit."""

    __tablename__ = "rejections"
    __table_args__ = (
        sa.UniqueConstraint("payload_sha256", "topic"),
        sa.Index(None, "code", "rejected_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    topic: Mapped[str] = mapped_column(sa.String(255))
    site: Mapped[str | None] = mapped_column(sa.String(64))
    line: Mapped[str | None] = mapped_column(sa.String(64))
    station: Mapped[str | None] = mapped_column(sa.String(64))
    code: Mapped[str] = mapped_column(sa.String(64))
    message: Mapped[str] = mapped_column(sa.Text)
    payload_sha256: Mapped[str] = mapped_column(sa.String(64))
    payload_size: Mapped[int] = mapped_column(sa.BigInteger)
    payload: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    worker_id: Mapped[str] = mapped_column(sa.String(64))
    rejected_at: Mapped[datetime]


class RetentionRun(Base):
    """One `inspector retention --apply`: the cut-off, who ran it, and what it removed."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    cutoff: Mapped[datetime]
    include_snapshots: Mapped[bool]
    media_removed: Mapped[int]
    bytes_removed: Mapped[int] = mapped_column(sa.BigInteger)
    media_kept_for_snapshots: Mapped[int]
    actor: Mapped[str] = mapped_column(sa.String(128))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class RemovedMedia(Base):
    """A blob whose bytes a retention run deleted; its media row and links stay."""

    __tablename__ = "removed_media"

    run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("retention_runs.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(sa.ForeignKey("media.sha256"), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    # The newest inspection that referenced it: why it counted as old.
    last_used_at: Mapped[datetime]
    removed_at: Mapped[datetime]


class User(Base):
    """A person (or script owner) of the review app, with one role."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))  # viewer | reviewer | admin
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]


class ApiToken(Base):
    """A token for scripts; only its sha256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class WebSession(Base):
    """A logged-in browser: the cookie holds a random token; the row keeps sha256 hashes only."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_hash: Mapped[str] = mapped_column(sa.String(64))  # sha256 of the session's CSRF token
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    address: Mapped[str | None] = mapped_column(sa.String(64))  # where the login came from


class LoginFailure(Base):
    """Recent failed logins per user name or client address, for throttling."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(sa.String(160), primary_key=True)
    failures: Mapped[int]
    first_failed_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class LoginAddress(Base):
    """An address a user logged in from: its owner passes the account's back-off there."""

    __tablename__ = "login_addresses"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    last_login_at: Mapped[datetime]


class ReviewMark(Base):
    """Inspection marked reviewed by one user; reviewed state is per user, deleting unmarks."""

    __tablename__ = "review_marks"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    inspection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("inspections.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    marked_at: Mapped[datetime]


class VerdictDay(Base):
    """Latest verdicts per UTC capture day, site, line, adapter and verdict (store.tallies)."""

    __tablename__ = "verdict_days"

    day: Mapped[str] = mapped_column(sa.String(10), primary_key=True)  # YYYY-MM-DD
    site: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    line: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    adapter: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    verdict: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    n: Mapped[int]


class VerdictHour(Base):
    """Latest verdicts per UTC capture day, site, line, adapter and hour of day (store.tallies)."""

    __tablename__ = "verdict_hours"

    day: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    site: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    line: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    adapter: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    hour: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    n: Mapped[int]


class ReviewedDay(Base):
    """Reviewed inspections per day, site, adapter, verdicts and P(PASS) bucket (store.tallies).

    Each counts once, by its latest verdict (verdict, adapter, P(PASS) bucket) and its latest
    review (final_verdict); the day is the UTC capture day.
    """

    __tablename__ = "reviewed_days"

    day: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    site: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    adapter: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    verdict: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    final_verdict: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    bucket: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    n: Mapped[int]


class GoldenPart(Base):
    """A reviewed inspection the canary re-sends to every worker: its expected answer, frozen.

    `expected` is the reviewed PASS/FAIL when it was marked; a later review does not move it
    (unmark and mark again to take the new answer). Unmarking deletes the row; `golden_audit`
    keeps both.
    """

    __tablename__ = "golden_parts"

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("inspections.id", ondelete="CASCADE"), unique=True
    )
    review_id: Mapped[int | None] = mapped_column(sa.ForeignKey("reviews.id", ondelete="SET NULL"))
    expected: Mapped[str] = mapped_column(sa.String(8))  # PASS | FAIL
    marked_by: Mapped[str] = mapped_column(sa.String(64))
    marked_at: Mapped[datetime]


class GoldenReference(Base):
    """The P(PASS) a golden part must get from one adapter version (name and version).

    The reviewed verdict's P(PASS) for its own adapter version; for any other version, the
    first canary answer from it. A promoted adapter may move P(PASS); the same version may not.
    """

    __tablename__ = "golden_references"
    __table_args__ = (sa.UniqueConstraint("golden_id", "adapter", "adapter_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    golden_id: Mapped[int] = mapped_column(sa.ForeignKey("golden_parts.id", ondelete="CASCADE"))
    adapter: Mapped[str] = mapped_column(sa.String(64))
    # 0: no registry version (the base, or an adapter named by the station).
    adapter_version: Mapped[int]
    p_pass: Mapped[float]
    source: Mapped[str] = mapped_column(sa.String(80))  # review | canary:<worker id>
    recorded_at: Mapped[datetime]


class GoldenAudit(Base):
    """One mark or unmark of a golden part: who, when, and the expectation it held."""

    __tablename__ = "golden_audit"
    __table_args__ = (sa.Index(None, "inspection_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(sa.ForeignKey("inspections.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(sa.String(8))  # mark | unmark
    expected: Mapped[str] = mapped_column(sa.String(8))
    actor: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime]
