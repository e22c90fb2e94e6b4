"""The review API marks a reviewed inspection golden, lists it and unmarks it; an unreviewed
inspection is refused with golden.not_reviewed; a viewer cannot change the golden set."""

from __future__ import annotations

from fastapi.testclient import TestClient

from inspector.store import Store
from tests.review.helpers import add_user, csrf_of, login, seed


def test_a_reviewer_marks_a_reviewed_inspection_golden_lists_and_unmarks_it(
    client: TestClient, store: Store
) -> None:
    rid, other = seed(store, ["REVIEW", "PASS"])
    add_user(store, "ana")
    login(client, "ana")
    headers = {"X-CSRF-Token": csrf_of(client)}
    url = f"/api/v1/inspections/{rid}/golden"
    unreviewed = client.put(url, headers=headers)
    assert unreviewed.status_code == 422
    assert unreviewed.json()["code"] == "golden.not_reviewed"
    answered = client.post(
        f"/api/v1/inspections/{rid}/reviews",
        json={"decision": "answer", "final_verdict": "PASS"},
        headers=headers,
    )
    assert answered.status_code == 201, answered.text
    marked = client.put(url, headers=headers)
    assert marked.status_code == 200, marked.text
    assert (marked.json()["expected"], marked.json()["marked_by"]) == ("PASS", "ana")
    assert client.put(url, headers=headers).json() == marked.json()  # idempotent
    listed = client.get("/api/v1/golden").json()
    assert [g["request_id"] for g in listed] == [rid]
    assert client.get("/api/v1/golden?site=elsewhere").json() == []
    assert client.delete(url, headers=headers).json() == {"request_id": rid, "unmarked": True}
    assert client.delete(url, headers=headers).json()["unmarked"] is False
    assert client.get("/api/v1/golden").json() == []
    assert client.put(f"/api/v1/inspections/{other}/golden").status_code == 403  # no CSRF


def test_a_viewer_cannot_mark_golden(client: TestClient, store: Store) -> None:
    (rid,) = seed(store, ["PASS"])
    add_user(store, "vic", role="viewer")
    login(client, "vic")
    headers = {"X-CSRF-Token": csrf_of(client)}
    assert client.put(f"/api/v1/inspections/{rid}/golden", headers=headers).status_code == 403
