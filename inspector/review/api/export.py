"""Streamed CSV and JSON Lines of the queue's inspections, verdicts and reviews."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import chain, islice
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from inspector.review.auth import Principal, api_user
from inspector.review.context import AppContext, app_context
from inspector.review.filters import QueueQuery
from inspector.review.hosts import public_base
from inspector.safetext import csv_cell, json_line
from inspector.store.export import CSV_BASE_COLUMNS, LATER_COLUMNS, csv_record, iter_export

router = APIRouter(tags=["export"])

# The store's export schema, plus each medium's URL in this app (where it always stood,
# before the columns added since).
COLUMNS = [*CSV_BASE_COLUMNS, "media_urls", *LATER_COLUMNS]
MAX_ROWS = 10_000_000


def _csv_rows(records: Iterator[dict[str, Any]], media_url: str) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)

    def take() -> str:
        out = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return out

    writer.writerow(COLUMNS)
    yield take()
    for n, rec in enumerate(records, 1):
        flat = csv_record(rec)
        flat["media_urls"] = " ".join(media_url + m["sha256"] for m in rec["media"])
        writer.writerow([csv_cell(flat[c]) for c in COLUMNS])
        if n % 200 == 0:
            yield take()
    yield take()


def _jsonl_rows(records: Iterator[dict[str, Any]], media_url: str) -> Iterator[str]:
    for rec in records:
        for m in rec["media"]:
            m["url"] = media_url + m["sha256"]
        yield json_line(rec) + "\n"


@router.get("/export")
def export(
    q: QueueQuery = Depends(),
    format: Literal["csv", "jsonl"] = Query("csv"),
    limit: int | None = Query(None, ge=1, le=MAX_ROWS, description="at most this many rows"),
    who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> StreamingResponse:
    """Every inspection the queue filters select, newest first; media as sha256 + URL.

    The first rows are read before the answer starts, so a refused filter or a database
    that does not answer is an error status, not a 200; a failure later ends the download
    as incomplete (the connection closes without the end of the chunked body).
    """
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    media_url = f"{public_base(ctx.settings.review) or ''}/media/"

    def records() -> Iterator[dict[str, Any]]:
        with ctx.store.db.read() as session:
            yield from iter_export(session, flt, who.user.id, limit)

    source = records()
    first = list(islice(source, 1))  # the first chunk's query runs here, before any byte
    rows = chain(first, source)
    body = _csv_rows(rows, media_url) if format == "csv" else _jsonl_rows(rows, media_url)
    media_type = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = f"inspections.{format}"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
