"""Real inspections, verdicts and users for the review-app tests."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from inspector.protocol import Decision, RationaleState, VerdictMessage
from inspector.review.passwords import hash_password
from inspector.store import Store, record_inspections, record_verdicts
from inspector.store import users as user_store
from tests.core.helpers import make_request

PASSWORD = "correct horse battery"
# Real argon2id at a low cost: the suite logs in often on a shared two-core machine.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
REQUEST_FIELDS = ("part_id", "note", "line", "station")
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
# The review app's settings in these tests: every PASS audited, a quick lockout, one site.
SETTINGS = {
    "review": {"audit_pass_percent": 100, "max_login_failures": 3, "allowed_hosts": ["testserver"]},
    "sites": {
        "osaka": {
            "threshold": 0.7,
            "defects": [
                {"name": "scratch", "description": "a line in the finish"},
                {"name": "dent", "description": "a local deformation"},
            ],
        }
    },
}


def seed(
    store: Store,
    verdicts: list[str],
    site: str = "osaka",
    start: datetime = T0,
    unchecked: dict[str, str] | None = None,
    p_pass: list[float] | None = None,
    **over: Any,
) -> list[str]:
    """One inspection per entry of `verdicts` (PASS/FAIL/REVIEW), a minute apart; request_ids.

    `unchecked` fields are stored as given, past the intake's text rules: rows from before
    those rules, which the pages must still show safely. `p_pass` gives each verdict's
    P(PASS) (default 0.95, 0.1 and 0.55 for PASS, FAIL and REVIEW).
    """
    requests = []
    messages = []
    for n, verdict in enumerate(verdicts):
        fields = {
            "site": site,
            "part_id": f"P-{n:04d}",
            "captured_at": start + timedelta(minutes=n),
        }
        fields.update(
            {k: v for k, v in over.items() if k in ("part_id", "note", "line", "station")}
        )
        req = make_request(**fields)
        requests.append(req.model_copy(update=unchecked) if unchecked else req)
        p = p_pass[n] if p_pass else {"PASS": 0.95, "FAIL": 0.1, "REVIEW": 0.55}[verdict]
        messages.append(
            VerdictMessage(
                request_id=req.request_id,
                site=req.site,
                line=req.line,
                station=req.station,
                part_id=req.part_id,
                verdict=Decision(verdict),
                confidence=max(p, 1 - p),
                p_pass=p,
                rationale=over.get("rationale", f"rationale {n}"),
                rationale_state=over.get("rationale_state", RationaleState.PRODUCED),
                transcript=over.get("transcript"),
                defects=[{"type": "dent"}] if verdict == "FAIL" else [],
                model="phi-4-mm",
                adapter=over.get("adapter", "osaka-v1"),
                prompt_version="v1",
                worker_id="w1",
                latency_ms=120.0,
                decided_at=req.captured_at + timedelta(seconds=1),
            )
        )
    with store.db.write() as session:
        record_inspections(session, store.blobs, requests)
        record_verdicts(session, messages)
    return [str(r.request_id) for r in requests]


def add_user(store: Store, name: str, role: str = "reviewer") -> None:
    """A user with the shared test password."""
    with store.db.write() as session:
        user_store.add_user(session, name, hash_password(PASSWORD, CHEAP), role)


def login(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    """Log in through the form, as a browser does; the client keeps the session cookie."""
    page = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    return client.post(
        "/login",
        data={"username": name, "password": password, "login_csrf": token.group(1)},
        follow_redirects=False,
    )


def csrf_of(client: TestClient) -> str:
    """The session's CSRF token, as pages carry it in a meta tag."""
    page = client.get("/queue")
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found is not None
    return found.group(1)
