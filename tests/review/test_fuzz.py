"""Hypothesis over every route of the review app, on SQLite and PostgreSQL: no 5xx, no leak.

The operations come from the app itself: each API route's query and path parameters as
the OpenAPI document lists them (with its JSON body's fields), each page route's from
FastAPI's view of its dependencies, and the form fields the page handlers read. Values are
what probes send: NUL and other characters a database cannot hold, days at the ends of the
calendar, numbers past 64 bits, cursors to nowhere, real ids, plain text. Each answer must
be below 500, quote no SQL or driver text and carry the security headers.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.store import Store
from tests.review.helpers import add_user, csrf_of, login, seed

LEAKS = re.compile(r"SELECT |INSERT INTO|UPDATE |psycopg|sqlite3|sqlalchemy|Traceback|\[SQL")
EXAMPLES = 250  # per database: about 20 s each on a shared two-core machine
NASTY = [
    "\x00",
    "a\x00b",
    "9999-12-31",
    "0001-01-01",
    "9999-12",
    "0001-01",
    "0000-00",
    "2026-02-30",
    "1e309",
    "nan",
    "-inf",
    "-1",
    "0",
    str(2**31),
    str(2**63),
    str(2**70),
    "0001-01-01T00:00:00+14:00~1",
    "9999-12-31T23:59:59-14:00~9223372036854775807",
    "2026-11-23T08:00:00+00:00~99999999999999999999",
    "2026-11-23T08:00:00~1",
    "~",
    "' OR 1=1 --",
    "%00",
    "\u202eLIAF",
    "x" * 3000,
]
FORM_FIELDS = ["decision", "final_verdict", "defect_type", "comment", "q", "back", "request_id"]
QUEUE_FIELDS = ["tab", "site", "since", "until", "reviewed", "adapter", "min_confidence", "part_id"]


def _value(real_ids: list[str]) -> st.SearchStrategy[str]:
    printable = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
    numbers = st.integers(-(2**70), 2**70).map(str)
    return st.one_of(
        st.sampled_from(NASTY),
        st.sampled_from(real_ids),
        printable,
        numbers,
        st.dates().map(str),
        st.floats().map(str),
    )


def _operations(app: Any) -> list[tuple[str, str, list[str], list[str], list[str]]]:
    """(method, path, path params, query params, body fields) of every route."""
    spec = app.openapi()
    ops = []
    for full, route in _routes(app.routes):
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op = spec["paths"].get(full, {}).get(method.lower())
            if op is not None:
                params = op.get("parameters", [])
                query = [p["name"] for p in params if p["in"] == "query"]
                body_ref = (
                    op.get("requestBody", {})
                    .get("content", {})
                    .get("application/json", {})
                    .get("schema", {})
                    .get("$ref", "")
                )
                schema = spec["components"]["schemas"].get(body_ref.rsplit("/", 1)[-1], {})
                body = list(schema.get("properties", {}))
            else:
                query = _query_names(route.dependant)
                body = FORM_FIELDS if method == "POST" else []
            paths = re.findall(r"{(\w+)}", full)
            ops.append((method, full, paths, query, body))
    return ops


def _routes(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Every APIRoute with its full path, through included routers (FastAPI wraps them)."""
    out: list[tuple[str, APIRoute]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append((prefix + route.path, route))
        elif (inner := getattr(route, "original_router", None)) is not None:
            out += _routes(inner.routes, prefix + route.include_context.prefix)
    return out


def _query_names(dependant: Any) -> list[str]:
    """The query parameters a route reads, through its dependencies (page routes)."""
    names = [p.alias for p in dependant.query_params]
    for sub in dependant.dependencies:
        names += _query_names(sub)
    return sorted(set(names))


def _fuzz(client: TestClient, store: Store, counts: Counter[str]) -> None:
    real = seed(store, ["REVIEW", "FAIL", "PASS", "REVIEW"])
    add_user(store, "ana", "admin")
    login(client, "ana")
    csrf = csrf_of(client)
    ops = [op for op in _operations(client.app) if op[1] != "/logout"]  # keep the session
    values = _value(real)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def probe(data: st.DataObject) -> None:
        method, path, path_params, query, body = data.draw(st.sampled_from(ops))
        url = path
        for name in path_params:
            url = url.replace("{" + name + "}", data.draw(st.sampled_from([*real, *NASTY[:4]])))
        url = url.replace("\x00", "%00")
        params = {
            k: data.draw(values) for k in data.draw(st.lists(st.sampled_from(query or ["x"])))
        }
        fields = data.draw(st.lists(st.sampled_from(body or ["x"]), unique=True)) if body else []
        headers = {"X-CSRF-Token": csrf}
        if method == "GET":
            r = client.request(method, url, params=params, headers=headers)
        elif path.startswith("/api/"):
            doc: dict[str, Any] = {k: data.draw(values) for k in fields}
            if "request_ids" in doc:
                doc["request_ids"] = [doc["request_ids"], *real[:2]]
            r = client.request(
                method,
                url,
                params=params,
                content=json.dumps(doc),
                headers=headers | {"Content-Type": "application/json"},
            )
        else:
            form = {k: data.draw(values) for k in fields}
            if "q" in form and data.draw(st.booleans()):
                picks = data.draw(st.lists(st.sampled_from(QUEUE_FIELDS), max_size=3))
                form["q"] = "&".join(f"{k}={data.draw(values)}" for k in picks)
            if path == "/login":
                form |= {"username": data.draw(values), "password": data.draw(values)}
            form["csrf_token"] = csrf
            r = client.request(method, url, params=params, data=form, headers=headers)
        counts[f"{r.status_code // 100}xx"] += 1
        assert r.status_code < 500, (method, url, params, r.text[:300])
        assert not LEAKS.search(r.text), (method, url, r.text[:500])
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" in r.headers

    probe()


def test_no_route_answers_5xx_or_quotes_the_database_for_any_input(
    client: TestClient, store: Store, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    counts: Counter[str] = Counter()
    _fuzz(client, store, counts)
    with capsys.disabled():
        backend = db_url.split(":", 1)[0]
        print(
            f"\nfuzz on {backend}: {sum(counts.values())} requests, {dict(sorted(counts.items()))}"
        )
    assert counts["2xx"] > 0 and counts["4xx"] > 0  # both kinds of answer were exercised
