"""Streamed CSV and JSON Lines of the queue's inspections, verdicts and reviews."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from inspector.review.auth import Principal, api_user
from inspector.review.context import AppContext, app_context
from inspector.review.filters import QueueQuery
from inspector.safetext import csv_cell, json_line
from inspector.store.export import CSV_COLUMNS, csv_record, iter_export

router = APIRouter(tags=["export"])

# The store's export schema, plus each medium's URL in this app.
COLUMNS = [*CSV_COLUMNS, "media_urls"]


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
    request: Request,
    q: QueueQuery = Depends(),
    format: Literal["csv", "jsonl"] = Query("csv"),
    limit: int | None = Query(None, ge=1, description="at most this many rows"),
    who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> StreamingResponse:
    """Every inspection the queue filters select, newest first; media as sha256 + URL."""
    flt = q.store_filter(ctx.settings.review.audit_pass_percent)
    media_url = str(request.url_for("media", sha256="x"))[:-1]

    def records() -> Iterator[dict[str, Any]]:
        with ctx.store.db.read() as session:
            yield from iter_export(session, flt, who.user.id, limit)

    rows = _csv_rows(records(), media_url) if format == "csv" else _jsonl_rows(records(), media_url)
    media_type = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = f"inspections.{format}"
    return StreamingResponse(
        rows,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
