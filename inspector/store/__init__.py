"""The SQL store: typed models, migrations, media blobs and idempotent record functions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from inspector.protocol import RationaleMessage
from inspector.settings import StoreSettings
from inspector.store.answers import Answers, Batch, Refusal, answer
from inspector.store.blobs import BlobStore
from inspector.store.database import Database, upgrade
from inspector.store.export import CSV_COLUMNS, EXPORT_COLUMNS, csv_record, iter_export
from inspector.store.filters import Cursor, VerdictFilter
from inspector.store.inspections import (
    find_inspection,
    known_requests,
    record_inspection,
    record_inspections,
)
from inspector.store.rationales import RationaleUpdate, expire_rationales
from inspector.store.rejections import record_rejection
from inspector.store.reviews import ReviewInput, record_review
from inspector.store.verdicts import (
    latest_verdict,
    latest_verdict_message,
    list_verdicts,
    record_verdict,
    record_verdicts,
    stored_verdict_message,
    verdict_message,
)


class Store:
    """A database plus its blob directory: what the worker, CLI and review app hold."""

    def __init__(self, url: str, blob_dir: Path) -> None:
        self.db = Database(url)
        self.blobs = BlobStore(blob_dir)

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Store:
        """A store from the [store] settings."""
        return cls(settings.url, settings.blob_dir)

    def answer(self, batch: Batch) -> Answers:
        """Store one batch's inspections, verdicts and rejections in one transaction."""
        return answer(self.db, self.blobs, batch)

    def expire_rationales(
        self, decided_before: datetime, worker_id: str, now: datetime
    ) -> list[RationaleMessage]:
        """Mark rationales pending since before `decided_before` not produced (see rationales)."""
        return expire_rationales(self.db, decided_before, worker_id, now)

    def upgrade(self) -> str | None:
        """Migrate the schema to the newest revision."""
        return upgrade(self.db.url)

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()


__all__ = [
    "CSV_COLUMNS",
    "EXPORT_COLUMNS",
    "Answers",
    "Batch",
    "BlobStore",
    "Cursor",
    "Database",
    "RationaleUpdate",
    "Refusal",
    "ReviewInput",
    "Store",
    "VerdictFilter",
    "csv_record",
    "find_inspection",
    "iter_export",
    "known_requests",
    "latest_verdict",
    "latest_verdict_message",
    "list_verdicts",
    "record_inspection",
    "record_inspections",
    "record_rejection",
    "record_review",
    "record_verdict",
    "record_verdicts",
    "stored_verdict_message",
    "upgrade",
    "verdict_message",
]
