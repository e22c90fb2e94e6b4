"""Rejections: refused payloads with their code, once per (payload, topic)."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.protocol import RejectionMessage
from inspector.store.models import Rejection


def record_rejection(
    session: Session, message: RejectionMessage, topic: str, payload: bytes, keep_bytes: int
) -> tuple[Rejection, bool]:
    """Store a refusal with its payload (up to `keep_bytes`); once per (payload, topic)."""
    sha = hashlib.sha256(payload).hexdigest()
    if sha != message.payload_sha256:
        raise ValueError("rejection message does not describe this payload")
    existing = session.scalar(
        sa.select(Rejection).where(Rejection.payload_sha256 == sha, Rejection.topic == topic)
    )
    if existing is not None:
        return existing, False
    row = Rejection(
        request_id=str(message.request_id) if message.request_id else None,
        topic=topic[:255],
        site=message.site,
        line=message.line,
        station=message.station,
        code=message.code,
        message=message.message,
        payload_sha256=sha,
        payload_size=len(payload),
        payload=payload if len(payload) <= keep_bytes else None,
        worker_id=message.worker_id,
        rejected_at=message.rejected_at,
    )
    session.add(row)
    session.flush()
    return row, True
