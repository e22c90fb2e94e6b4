"""The worker's unit of work: one batch's answers stored in one transaction.

A batch holds the requests the engine judged (each with its new verdict), the requests whose
verdict is already stored (re-published, never judged twice), the refused payloads and the
rationales of verdicts published before them. Their inspections, media links, verdicts,
rejections and rationales are committed together or not at all, and what comes back is the
message to publish for each: the stored verdict where an earlier one
(another worker, a redelivery) won, so every answer published is the one in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from inspector.protocol import (
    InspectionRequest,
    RationaleMessage,
    RejectionMessage,
    VerdictMessage,
    utcnow,
)
from inspector.store.blobs import BlobStore
from inspector.store.database import Database
from inspector.store.inspections import record_inspections
from inspector.store.rationales import RationaleUpdate, write_rationales
from inspector.store.rejections import record_rejection
from inspector.store.verdicts import (
    latest_verdict_message,
    record_verdicts,
    stored_verdict_message,
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused payload: the rejection to store and publish, and what was refused."""

    message: RejectionMessage
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """What one commit stores: accepted requests, their new verdicts, known ones, refusals."""

    requests: Sequence[InspectionRequest] = ()  # every accepted request, judged or known
    verdicts: Sequence[VerdictMessage] = ()  # the engine's, one per judged request
    known: Sequence[UUID | str] = ()  # request_ids whose stored verdict is answered again
    refusals: Sequence[Refusal] = ()
    keep_payload_bytes: int = 0  # refused payloads up to this size are kept
    # Rationales of verdicts committed earlier (or earlier in this batch), written into them.
    rationales: Sequence[RationaleUpdate] = ()


@dataclass(frozen=True, slots=True)
class Answers:
    """The committed answers, in the batch's order: what to publish for each."""

    verdicts: list[VerdictMessage] = field(default_factory=list)  # per Batch.verdicts
    known: list[VerdictMessage] = field(default_factory=list)  # per Batch.known
    refusals: list[RejectionMessage] = field(default_factory=list)  # per Batch.refusals
    # per Batch.rationales; None where the verdict is not the one this worker stored
    rationales: list[RationaleMessage | None] = field(default_factory=list)


def answer(db: Database, blobs: BlobStore, batch: Batch) -> Answers:
    """Store a batch in one transaction; every verdict answered is the stored one."""
    out = Answers()
    with db.write() as session:
        record_inspections(session, blobs, batch.requests)
        recorded = record_verdicts(session, batch.verdicts)
        for message, (vid, created) in zip(batch.verdicts, recorded, strict=True):
            # A verdict stored earlier (another worker, a redelivery) wins over this one.
            out.verdicts.append(message if created else stored_verdict_message(session, vid))
        out.known.extend(latest_verdict_message(session, rid) for rid in batch.known)
        for refusal in batch.refusals:
            record_rejection(
                session, refusal.message, refusal.topic, refusal.payload, batch.keep_payload_bytes
            )
            out.refusals.append(refusal.message)
        if batch.rationales:
            out.rationales.extend(write_rationales(session, batch.rationales, utcnow()))
    return out
