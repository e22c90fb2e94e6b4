"""What the store holds after a line run: each request once, one verdict row each, by worker.

The stations' view (verdict messages received) says every request was answered; the store
says it was answered exactly once: one inspection per request id and one verdict row per
inspection, whichever worker of the group took it. A duplicate row would mean two workers
judged one request, which the shared subscription and the store's unique keys must prevent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from inspector.store import Store, VerdictFilter, known_requests, list_verdicts

_CHUNK = 500  # request ids per query: well under SQLite's bound on bound parameters


@dataclass(frozen=True)
class Ledger:
    """Counts over the requests a run sent: stored, judged, repeated, and by which worker."""

    requests: int
    inspections: int  # of those requests, stored
    verdict_rows: int  # verdict rows of the run's site
    judged_once: int  # requests with exactly one verdict row
    duplicates: int  # verdict rows beyond the first of a request
    without_verdict: int  # requests with no verdict row (rejected or never answered)
    rows_by_worker: dict[str, int] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        """Every request stored once with one verdict row, and no row twice."""
        return self.requests == self.inspections == self.judged_once and self.duplicates == 0

    def report(self) -> dict[str, Any]:
        """The counts as JSON, with the verdict."""
        return asdict(self) | {"exactly_once": self.exactly_once}


def read_ledger(store: Store, site: str, request_ids: Sequence[str]) -> Ledger:
    """Count the site's inspections and verdict rows against the request ids sent."""
    stored: dict[str, tuple[str, bool]] = {}
    for start in range(0, len(request_ids), _CHUNK):
        stored |= known_requests(store.db, request_ids[start : start + _CHUNK])
    with store.db.read() as session:
        rows = [
            (row.inspection.request_id, row.worker_id)
            for row in list_verdicts(session, VerdictFilter(site=site), limit=None)
        ]
    per_request = Counter(rid for rid, _ in rows)
    sent = set(request_ids)
    return Ledger(
        requests=len(sent),
        inspections=len(stored),
        verdict_rows=len(rows),
        judged_once=sum(1 for rid in sent if per_request.get(rid) == 1),
        duplicates=sum(n - 1 for n in per_request.values()),
        without_verdict=sum(1 for rid in sent if rid not in per_request),
        rows_by_worker=dict(sorted(Counter(worker for _, worker in rows).items())),
    )
