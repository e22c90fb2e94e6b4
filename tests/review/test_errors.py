"""No answer quotes the database, every bad field is a 4xx naming it, a failure stores nothing.

On SQLite and PostgreSQL: a NUL (or a lone surrogate) in every form, query and API field,
days and months past what the app can compute with, cursors to nowhere, an invalid hidden
`q` field; a real database failure answers a fixed message with a request id and keeps the
security headers; an export that fails after it began ends as an incomplete download.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from inspector.review import create_app
from inspector.settings import Settings
from inspector.store import Store
from tests.fixtures.browser import LiveServer
from tests.fixtures.services import free_port
from tests.review.helpers import SETTINGS, add_user, csrf_of, login, seed

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
LEAKS = re.compile(
    r"SELECT |INSERT INTO|UPDATE |psycopg|sqlite3|sqlalchemy|Traceback|\[SQL|\[parameters"
)
NUL = "a\x00b"


def _clean(r: Any) -> None:
    """A 4xx that quotes nothing of the database and keeps the security headers."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert not LEAKS.search(r.text), r.text[:500]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"])


def _reviews(store: Store) -> int:
    with store.db.read() as session:
        return int(session.scalar(sa.text("SELECT count(*) FROM reviews")) or 0)


def test_a_nul_in_the_login_form_is_a_422_naming_the_field_without_database_text(
    client: TestClient, store: Store
) -> None:
    for field in ("username", "password", "next"):
        form = {"username": "ana", "password": "x" * 12, "login_csrf": "t", field: NUL}
        r = client.post("/login", data=form)
        _clean(r)
        assert r.status_code == 422
        assert {"username": "user name", "password": "password", "next": "next"}[field] in r.text
        assert "U+0000" in r.text


def test_a_nul_in_any_query_form_or_json_field_is_a_422_naming_it(
    client: TestClient, store: Store
) -> None:
    (rid,) = seed(store, ["REVIEW"])
    add_user(store, "ana")
    login(client, "ana")
    csrf = csrf_of(client)
    for path in (
        "/queue",
        "/calendar",
        "/stats",
        "/api/v1/queue",
        "/api/v1/export",
        "/api/v1/stats",
    ):
        for field in ("part_id", "adapter", "site", "anything"):
            r = client.get(path, params={field: NUL})
            _clean(r)
            assert r.status_code == 422 and field in r.text, (path, field)
    before = _reviews(store)
    for field in ("comment", "defect_type", "decision", "q"):
        form = {"csrf_token": csrf, "decision": "confirm", field: NUL}
        r = client.post(f"/inspections/{rid}/review", data=form)
        _clean(r)
        assert field in r.text
    r = client.post(f"/inspections/{rid}/review", data={"csrf_token": csrf, "q": "part_id=%00"})
    _clean(r)
    assert "q.part_id" in r.text
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    for body in (
        {"decision": "confirm", "comment": NUL},
        {"decision": "confirm", "comment": "\ud800"},
        {"decision": "override", "final_verdict": "FAIL", "defect_type": NUL},
    ):
        # JSON spells a lone surrogate as an escape; the client would refuse to encode it raw.
        raw = json.dumps(body)
        r = client.post(f"/api/v1/inspections/{rid}/reviews", content=raw, headers=headers)
        _clean(r)
        assert r.status_code == 422
        assert r.json()["request_id"] == r.headers["x-request-id"]
    assert _reviews(store) == before


def test_days_months_cursors_and_limits_out_of_range_are_4xx_naming_the_field(
    client: TestClient, store: Store
) -> None:
    seed(store, ["REVIEW", "FAIL"])
    add_user(store, "ana")
    login(client, "ana")
    cases = [
        ("/queue", {"until": "9999-12-31"}, "until"),
        ("/queue", {"since": "0001-01-01"}, "since"),
        ("/api/v1/queue", {"until": "9999-12-31"}, "until"),
        ("/stats", {"until": "9999-12-31"}, "until"),
        ("/api/v1/stats", {"since": "0001-01-01"}, "since"),
        ("/calendar", {"month": "9999-12"}, "month"),
        ("/calendar", {"month": "0001-01"}, "month"),
        ("/api/v1/calendar", {"month": "9999-12"}, "month"),
        ("/api/v1/export", {"limit": str(2**70)}, "limit"),
        ("/api/v1/queue", {"limit": "99999999999999999999"}, "limit"),
    ]
    for path, params, field in cases:
        r = client.get(path, params=params)
        _clean(r)
        assert field in r.text, (path, params, r.text[:300])
    for cursor in (
        "0001-01-01T00:00:00+14:00~1",
        "9999-12-31T23:59:59-14:00~1",
        "2026-11-23T08:00:00+00:00~99999999999999999999",
        "2026-11-23T08:00:00+00:00~2147483648",
        "2026-11-23T08:00:00+00:00~\u00b2",
        "1970-01-01T00:00:00+00:00~0",
    ):
        for path in ("/queue", "/api/v1/queue"):
            r = client.get(path, params={"cursor": cursor})
            if r.status_code == 200:  # a cursor before every row: an empty page
                assert "1970-01-01" in cursor
                continue
            _clean(r)
            assert "cursor" in r.text


def test_an_invalid_hidden_q_field_is_a_422_and_stores_nothing(
    client: TestClient, store: Store
) -> None:
    rids = seed(store, ["REVIEW", "REVIEW"])
    add_user(store, "ana")
    login(client, "ana")
    csrf = csrf_of(client)
    for q in ("tab=bogus", "reviewed=maybe", "min_confidence=5", "until=9999-12-31"):
        before = _reviews(store)
        r = client.post(
            f"/inspections/{rids[0]}/review",
            data={"csrf_token": csrf, "decision": "confirm", "q": q},
        )
        _clean(r)
        assert "q." + q.split("=")[0] in r.text
        assert _reviews(store) == before
        r = client.post(f"/inspections/{rids[0]}/unreviewed", data={"csrf_token": csrf, "q": q})
        _clean(r)
        r = client.post(
            "/queue/answer",
            data={
                "csrf_token": csrf,
                "q": q,
                "request_id": rids,
                "count": str(len(rids)),
                "final_verdict": "PASS",
            },
        )
        _clean(r)
        assert _reviews(store) == before


@SQLITE_ONLY
def test_a_database_failure_answers_a_fixed_message_with_its_request_id_and_the_headers(
    client: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seed(store, ["REVIEW"])
    add_user(store, "ana")
    login(client, "ana")
    with store.db.write() as session:  # a real failure: the queue's table is gone
        session.execute(sa.text("DROP TABLE review_marks"))
    for path in ("/queue", "/api/v1/queue"):
        r = client.get(path)
        assert r.status_code == 500
        assert not LEAKS.search(r.text) and "review_marks" not in r.text
        assert r.headers["x-request-id"] in r.text
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" in r.headers
        logged = [rec for rec in caplog.records if r.headers["x-request-id"] in rec.getMessage()]
        failure = logged[0].exc_info[1] if logged and logged[0].exc_info else None
        assert failure is not None and "review_marks" in str(failure.__cause__)
    assert client.get("/api/v1/queue").json()["code"] == "store.failed"


@SQLITE_ONLY
def test_an_unexpected_failure_keeps_the_headers_and_names_its_request_id(
    store: Store,
) -> None:
    (rid,) = seed(store, ["FAIL"])
    add_user(store, "ana")
    with store.db.write() as session:  # a verdict row the JSON decoder cannot read
        session.execute(sa.text("UPDATE verdicts SET defects = '{not json'"))
    app = create_app(Settings.model_validate(SETTINGS), store)
    with TestClient(app, raise_server_exceptions=False) as client:
        login(client, "ana")
        for path in (f"/inspections/{rid}", f"/api/v1/inspections/{rid}"):
            r = client.get(path)
            assert r.status_code == 500
            assert r.headers["x-request-id"] in r.text
            assert not LEAKS.search(r.text) and "JSONDecodeError" not in r.text
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff"


@SQLITE_ONLY
def test_an_export_that_fails_after_it_began_ends_as_an_incomplete_download(
    store: Store,
) -> None:
    rids = seed(store, ["FAIL"] * 1005)
    add_user(store, "ana")
    with store.db.write() as session:  # the oldest row, read in the export's second chunk
        session.execute(
            sa.text(
                "UPDATE verdicts SET defects = '{not json' WHERE inspection_id = "
                "(SELECT id FROM inspections WHERE request_id = :rid)"
            ),
            {"rid": rids[0]},
        )
    server = LiveServer(create_app(Settings.model_validate(SETTINGS), store), free_port())
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            page = http.get("/login")
            token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
            assert token is not None
            http.post(
                "/login",
                data={"username": "ana", "password": "correct horse battery"}
                | {"login_csrf": token.group(1)},
            )
            received = 0
            with (
                pytest.raises(httpx.RemoteProtocolError),
                http.stream("GET", "/api/v1/export", params={"tab": "all"}) as r,
            ):
                assert r.status_code == 200
                for chunk in r.iter_bytes():
                    received += len(chunk)
            assert received > 0  # the first chunk arrived; the end of the body never did
    finally:
        server.stop()
