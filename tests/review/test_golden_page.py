"""Golden parts on the detail page, on SQLite and PostgreSQL: a reviewer marks a reviewed
inspection golden with the page's form (CSRF, reviewer role), the page says what every
worker must answer, who marked it and when, and the mark is the one the API and the canary
read; unmarking takes it back. A viewer sees the mark and no button."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from inspector.store import Store
from tests.review.helpers import add_user, csrf_of, login, seed

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _post(client: TestClient, rid: str, action: str, **extra: str) -> httpx.Response:
    data = {"csrf_token": csrf_of(client), "action": action, "q": "tab=all", **extra}
    return client.post(f"/inspections/{rid}/golden", data=data, follow_redirects=False)


def _golden_text(page: str) -> str:
    found = re.search(r'<p id="golden">(.*?)</p>', page, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", "", found.group(1))


def test_a_reviewer_marks_a_reviewed_inspection_golden_on_its_page_and_unmarks_it(
    client: TestClient, store: Store
) -> None:
    rid, _ = seed(store, ["REVIEW", "PASS"])
    add_user(store, "ana")
    login(client, "ana")
    assert 'id="form-golden"' not in client.get(f"/inspections/{rid}").text  # not reviewed
    refused = _post(client, rid, "mark")
    assert refused.status_code == 422 and "review it first" in refused.text

    answered = client.post(
        f"/inspections/{rid}/review",
        data={"csrf_token": csrf_of(client), "decision": "answer", "final_verdict": "PASS"},
    )
    assert answered.status_code == 200
    page = client.get(f"/inspections/{rid}").text
    assert "Mark golden" in page and 'id="golden"' not in page
    marked = _post(client, rid, "mark")
    assert marked.status_code == 303
    assert marked.headers["location"] == f"/inspections/{rid}?tab=all"
    page = client.get(f"/inspections/{rid}").text
    said = _golden_text(page)
    assert "must answer PASS (marked by ana, " in said and " UTC)" in said
    assert "Unmark golden" in page
    assert [g["request_id"] for g in client.get("/api/v1/golden").json()] == [rid]

    # A later answer does not move the frozen expectation; the page says how to take it.
    client.post(
        f"/inspections/{rid}/review",
        data={
            "csrf_token": csrf_of(client),
            "decision": "answer",
            "final_verdict": "FAIL",
            "defect_type": "dent",
        },
    )
    said = _golden_text(client.get(f"/inspections/{rid}").text)
    assert "must answer PASS" in said and "now FAIL: unmark and mark again" in said

    assert _post(client, rid, "unmark").status_code == 303
    page = client.get(f"/inspections/{rid}").text
    assert 'id="golden"' not in page and "Mark golden" in page
    assert client.get("/api/v1/golden").json() == []
    assert _post(client, rid, "mark").status_code == 303
    assert client.get("/api/v1/golden").json()[0]["expected"] == "FAIL"


@SQLITE_ONLY
def test_the_golden_form_needs_its_csrf_token_a_reviewer_and_a_known_action(
    client: TestClient, store: Store
) -> None:
    (rid,) = seed(store, ["PASS"])
    add_user(store, "ana")
    add_user(store, "vi", role="viewer")
    login(client, "ana")
    headers = {"X-CSRF-Token": csrf_of(client)}
    body = {"decision": "answer", "final_verdict": "PASS"}
    assert client.post(f"/api/v1/inspections/{rid}/reviews", json=body, headers=headers).is_success
    no_token = client.post(f"/inspections/{rid}/golden", data={"action": "mark"})
    assert no_token.status_code == 403 and "security token" in no_token.text
    assert _post(client, rid, "promote").status_code == 422
    assert client.get("/api/v1/golden").json() == []
    assert _post(client, rid, "mark").status_code == 303
    with TestClient(client.app) as viewer:
        login(viewer, "vi")
        page = viewer.get(f"/inspections/{rid}").text
        assert "must answer PASS (marked by ana" in _golden_text(page)
        assert 'id="form-golden"' not in page
        assert _post(viewer, rid, "unmark").status_code == 403
    assert [g["request_id"] for g in client.get("/api/v1/golden").json()] == [rid]
