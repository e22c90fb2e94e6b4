"""The /api/v1 JSON API and the form endpoints, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inspector.review import create_app
from inspector.settings import Settings
from inspector.store import Store
from tests.review.helpers import CHEAP, PASSWORD, SETTINGS, T0, add_user, csrf_of, login, seed

# App logic without SQL of its own runs on SQLite only; everything that queries runs on both.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_visitor_without_a_session_is_sent_to_login_and_the_api_says_401(
    client: TestClient, store: Store
) -> None:
    (rid,) = seed(store, ["REVIEW"])
    for path in ("/queue", f"/inspections/{rid}", "/stats", "/calendar", "/api/v1/docs"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next=")
    for path in ("/api/v1/queue", f"/api/v1/inspections/{rid}", "/api/v1/stats", "/api/v1/export"):
        assert client.get(path).status_code == 401, path
    assert client.get("/api/v1/openapi.json").status_code == 401
    sha = client.get("/login")  # the login page itself is open
    assert sha.status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.post(f"/api/v1/inspections/{rid}/reviews", json={"decision": "confirm"})
    assert r.status_code == 401


@SQLITE_ONLY
def test_login_sets_an_httponly_samesite_cookie_and_a_wrong_password_is_refused(
    client: TestClient, store: Store
) -> None:
    add_user(store, "ana")
    bad = login(client, "ana", "wrong password!")
    assert bad.status_code == 401
    assert "Wrong user name or password" in bad.text
    ok = login(client, "ana")
    assert ok.status_code == 303 and ok.headers["location"] == "/queue"
    cookie = ok.headers["set-cookie"].lower()
    assert "inspector_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/api/v1/me").json() == {"username": "ana", "role": "reviewer"}
    page = client.get("/queue")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_repeated_failed_logins_lock_the_name_even_for_the_right_password(
    client: TestClient, store: Store
) -> None:
    add_user(store, "ben")
    for _ in range(3):  # max_login_failures in the test settings
        assert login(client, "ben", "not the password").status_code == 401
    locked = login(client, "ben")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.text
    assert client.get("/api/v1/me").status_code == 401


@SQLITE_ONLY
def test_login_redirects_only_to_pages_of_this_site(client: TestClient, store: Store) -> None:
    add_user(store, "cy")
    client.get("/login?next=//evil.example/x")
    r = login(client, "cy")
    assert r.headers["location"] == "/queue"


def test_queue_tabs_count_unreviewed_per_user_and_pages_by_key(
    client: TestClient, store: Store
) -> None:
    seed(store, ["REVIEW"] * 7 + ["FAIL"] * 3 + ["PASS"] * 2)
    add_user(store, "ana")
    login(client, "ana")
    first = client.get("/api/v1/queue", params={"tab": "review", "limit": 3}).json()
    assert first["counts"] == {"review": 7, "fail": 3, "audit": 2, "shadow": 0}
    seen = [i["request_id"] for i in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(
            "/api/v1/queue", params={"tab": "review", "limit": 3, "cursor": cursor}
        ).json()
        seen += [i["request_id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 7
    times = [
        i["captured_at"]
        for i in client.get("/api/v1/queue", params={"tab": "review"}).json()["items"]
    ]
    assert times == sorted(times, reverse=True)
    assert client.get("/api/v1/queue", params={"cursor": "garbage!"}).status_code == 422


def test_filters_search_and_calendar(client: TestClient, store: Store) -> None:
    seed(store, ["REVIEW"] * 3)
    seed(store, ["REVIEW"] * 2, site="kobe", part_id="KB-77")
    add_user(store, "ana")
    login(client, "ana")
    q = client.get("/api/v1/queue", params={"site": "kobe"}).json()
    assert {i["site"] for i in q["items"]} == {"kobe"}
    assert q["counts"]["review"] == 2
    found = client.get("/api/v1/queue", params={"tab": "all", "part_id": "KB-"}).json()
    assert [i["part_id"] for i in found["items"]] == ["KB-77", "KB-77"]
    none = client.get("/api/v1/queue", params={"since": "2026-11-24"}).json()
    assert none["items"] == []
    conf = client.get("/api/v1/queue", params={"min_confidence": 0.9}).json()
    assert conf["items"] == []
    cal = client.get("/api/v1/calendar", params={"month": "2026-11"}).json()
    assert cal == {"month": "2026-11", "days": [{"day": "2026-11-23", "unreviewed": 5}]}
    page = client.get("/calendar", params={"month": "2026-11"})
    assert "since=2026-11-23" in page.text


def test_confirm_and_overrides_append_to_the_history_and_the_latest_counts(
    client: TestClient, store: Store
) -> None:
    rid, fail_rid = seed(store, ["REVIEW", "FAIL"])
    add_user(store, "ana")
    login(client, "ana")
    headers = {"X-CSRF-Token": csrf_of(client)}
    url = f"/api/v1/inspections/{rid}/reviews"
    # A REVIEW verdict has nothing to confirm: its leaning (PASS at 0.55) is never recorded.
    leaning = client.post(url, json={"decision": "confirm"}, headers=headers)
    assert leaning.status_code == 422
    assert leaning.json()["detail"][0]["field"] == "decision"
    first = client.post(url, json={"decision": "answer", "final_verdict": "PASS"}, headers=headers)
    assert first.status_code == 201
    assert (first.json()["final_verdict"], first.json()["decision"]) == ("PASS", "answer")
    assert first.json()["via"] == "api"
    second = client.post(
        url,
        json={
            "decision": "override",
            "final_verdict": "FAIL",
            "defect_type": "scratch",
            "comment": "fine line",
        },
        headers=headers,
    )
    assert second.status_code == 201
    history = client.get(url).json()
    assert [(r["decision"], r["final_verdict"]) for r in history] == [
        ("answer", "PASS"),
        ("answer", "FAIL"),
    ]
    assert history[1]["defect_type"] == "scratch" and history[1]["reviewer"] == "ana"
    detail = client.get(f"/api/v1/inspections/{rid}").json()
    assert detail["reviewed_by_me"] is True
    assert detail["verdict"]["model"] == "phi-4-mm"
    assert [m["role"] for m in detail["media"]] == ["image", "audio"]
    assert {d["name"] for d in detail["defect_catalogue"]} == {"scratch", "dent", "other"}
    item = client.get("/api/v1/queue", params={"tab": "all", "reviewed": "any"}).json()["items"]
    assert {i["request_id"]: i["latest_review"] for i in item}[rid] == "FAIL"
    confirm_fail = client.post(
        f"/api/v1/inspections/{fail_rid}/reviews", json={"decision": "confirm"}, headers=headers
    ).json()
    assert (confirm_fail["final_verdict"], confirm_fail["defect_type"]) == ("FAIL", "dent")


def test_a_retried_review_with_the_same_id_is_stored_once(client: TestClient, store: Store) -> None:
    (rid,) = seed(store, ["REVIEW"])
    add_user(store, "ana")
    login(client, "ana")
    headers = {"X-CSRF-Token": csrf_of(client)}
    body = {
        "decision": "override",
        "final_verdict": "PASS",
        "review_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12,
    }
    url = f"/api/v1/inspections/{rid}/reviews"
    assert client.post(url, json=body, headers=headers).status_code == 201
    assert client.post(url, json=body, headers=headers).status_code == 201
    assert len(client.get(url).json()) == 1
    body["final_verdict"] = "FAIL"
    body["defect_type"] = "dent"
    assert client.post(url, json=body, headers=headers).status_code == 409


@SQLITE_ONLY
def test_override_to_fail_needs_a_defect_type_from_the_site_catalogue(
    client: TestClient, store: Store
) -> None:
    (rid,) = seed(store, ["PASS"])
    add_user(store, "ana")
    login(client, "ana")
    headers = {"X-CSRF-Token": csrf_of(client)}
    url = f"/api/v1/inspections/{rid}/reviews"
    body = {"decision": "override", "final_verdict": "FAIL"}
    missing = client.post(url, json=body, headers=headers)
    assert missing.status_code == 422 and "scratch, dent, other" in missing.text
    unknown = client.post(url, json={**body, "defect_type": "crack"}, headers=headers)
    assert unknown.status_code == 422
    vague = client.post(url, json={**body, "defect_type": "other"}, headers=headers)
    assert vague.status_code == 422 and vague.json()["detail"][0]["field"] == "comment"
    said = {**body, "defect_type": "other", "comment": "burr on the rim"}
    assert client.post(url, json=said, headers=headers).status_code == 201
    assert client.post(url, json={"decision": "override"}, headers=headers).status_code == 422


def test_marking_unreviewed_puts_it_back_in_my_queue_only(
    client: TestClient, app: object, store: Store
) -> None:
    rids = seed(store, ["REVIEW"] * 4)
    add_user(store, "ana")
    add_user(store, "bo")
    login(client, "ana")
    headers = {"X-CSRF-Token": csrf_of(client)}
    body = {"request_ids": rids[:3], "final_verdict": "PASS"}
    assert client.post("/api/v1/reviews/answer", json=body, headers=headers).json() == {
        "answered": 3
    }
    assert client.get("/api/v1/queue/counts").json()["review"] == 1
    r = client.delete(f"/api/v1/inspections/{rids[0]}/reviewed", headers=headers)
    assert r.status_code == 204
    assert client.get("/api/v1/queue/counts").json()["review"] == 2
    labels = client.get("/api/v1/queue", params={"reviewed": "any"}).json()["items"]
    assert {i["request_id"]: i["latest_review"] for i in labels}[rids[0]] is None
    with TestClient(client.app) as other:
        login(other, "bo")
        assert other.get("/api/v1/queue/counts").json()["review"] == 4
        mine = other.get("/api/v1/queue", params={"reviewed": "any"}).json()["items"]
        assert not any(i["reviewed_by_me"] for i in mine)


@SQLITE_ONLY
def test_a_viewer_can_look_but_not_review(client: TestClient, store: Store) -> None:
    (rid,) = seed(store, ["REVIEW"])
    add_user(store, "vi", role="viewer")
    login(client, "vi")
    csrf = csrf_of(client)
    assert client.get(f"/api/v1/inspections/{rid}").status_code == 200
    r = client.post(
        f"/api/v1/inspections/{rid}/reviews",
        json={"decision": "confirm"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 403
    page = client.get(f"/inspections/{rid}")
    assert 'id="form-confirm"' not in page.text
    form = client.post(
        f"/inspections/{rid}/review", data={"csrf_token": csrf, "decision": "confirm"}
    )
    assert form.status_code == 403
    assert client.get(f"/api/v1/inspections/{rid}/reviews").json() == []


@SQLITE_ONLY
def test_a_state_change_without_its_csrf_token_is_refused(client: TestClient, store: Store) -> None:
    (rid,) = seed(store, ["REVIEW"])
    add_user(store, "ana")
    login(client, "ana")
    api = client.post(f"/api/v1/inspections/{rid}/reviews", json={"decision": "confirm"})
    assert api.status_code == 403
    wrong = client.post(
        f"/api/v1/inspections/{rid}/reviews",
        json={"decision": "confirm"},
        headers={"X-CSRF-Token": "x" * 43},
    )
    assert wrong.status_code == 403
    form = client.post(f"/inspections/{rid}/review", data={"decision": "confirm"})
    assert form.status_code == 403
    assert "security token" in form.text
    assert client.delete(f"/api/v1/inspections/{rid}/reviewed").status_code == 403
    assert client.post("/logout").status_code == 403
    assert client.get(f"/api/v1/inspections/{rid}/reviews").json() == []
    good = client.post(
        f"/inspections/{rid}/review",
        data={"decision": "answer", "final_verdict": "PASS", "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert good.status_code == 303


def test_an_api_token_needs_no_csrf_and_dies_with_its_disabled_user(
    client: TestClient, store: Store
) -> None:
    from inspector.review.passwords import digest, new_api_token
    from inspector.store import users

    (rid,) = seed(store, ["REVIEW"])
    add_user(store, "bot")
    token = new_api_token()
    with store.db.write() as session:
        users.add_token(session, "bot", "ci", digest(token), token[:12])
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post(
        f"/api/v1/inspections/{rid}/reviews",
        json={"decision": "answer", "final_verdict": "PASS"},
        headers=auth,
    )
    assert r.status_code == 201 and r.json()["reviewer"] == "bot"
    assert (
        client.get("/api/v1/me", headers={"Authorization": "Bearer insp_nope"}).status_code == 401
    )
    with store.db.write() as session:
        users.set_disabled(session, "bot")
    assert client.get("/api/v1/me", headers=auth).status_code == 401
    with store.db.read() as session:
        assert all(t.revoked for t in users.list_tokens(session))
        assert users.get_user(session, "bot") is not None


def test_stats_change_after_reviews(client: TestClient, store: Store) -> None:
    rids = seed(store, ["PASS", "PASS", "FAIL", "REVIEW"])
    add_user(store, "ana")
    login(client, "ana")
    before = client.get("/api/v1/stats").json()
    assert before["total"]["inspections"] == 4 and before["total"]["reviewed"] == 0
    assert before["total"]["review_share"] == 0.25
    assert before["total"]["escapes_per_defective_part"] is None
    headers = {"X-CSRF-Token": csrf_of(client)}
    client.post(
        f"/api/v1/inspections/{rids[0]}/reviews",
        json={"decision": "override", "final_verdict": "FAIL", "defect_type": "dent"},
        headers=headers,
    )
    client.post(
        f"/api/v1/inspections/{rids[1]}/reviews", json={"decision": "confirm"}, headers=headers
    )
    client.post(
        f"/api/v1/inspections/{rids[2]}/reviews",
        json={"decision": "override", "final_verdict": "PASS"},
        headers=headers,
    )
    after = client.get("/api/v1/stats", params={"site": "osaka"}).json()
    total = after["total"]
    assert total["reviewed"] == 3
    # Reviewed: a PASS overridden to FAIL (an escape), a PASS confirmed, a FAIL overridden
    # to PASS (a false reject): 1 of 1 defective part escaped, 1 of 2 good parts rejected.
    assert total["escapes_per_defective_part"] == 1.0
    assert total["escapes_per_shipped_part_ppm"] == 500_000  # 1 of the 2 parts decided PASS
    assert total["false_rejects_per_good_part"] == 0.5
    assert total["verdict_accuracy"] == 1 / 3
    assert after["confusion"]["PASS"] == {"PASS": 1, "FAIL": 1}
    assert after["confusion"]["FAIL"] == {"PASS": 1, "FAIL": 0}
    assert [(g["site"], g["adapter"]) for g in after["groups"]] == [("osaka", "osaka-v1")]
    by_t = {w["threshold"]: w for w in after["what_if"]}
    # P(PASS) 0.95, 0.95, 0.1: at 0.96 every reviewed item would have gone to REVIEW.
    assert by_t[0.7]["escapes_per_defective_part"] == 1.0 and by_t[0.7]["review_share"] == 0
    assert sum(after["per_line_hour"]["osaka/l1"]) == 4
    page = client.get("/stats", params={"site": "osaka", "threshold": "0.96"})
    assert page.status_code == 200 and 'id="confusion"' in page.text
    chart = client.get("/stats/threshold.svg", params={"site": "osaka"})
    assert chart.headers["content-type"] == "image/svg+xml" and b"<svg" in chart.content
    assert b"<svg" in client.get("/stats/hourly.svg").content


def test_export_streams_csv_and_jsonl_with_media_by_reference_and_inert_formulas(
    client: TestClient, store: Store
) -> None:
    seed(store, ["REVIEW", "REVIEW"], part_id="=cmd|' /C calc'!A0", note="+SUM(A1)")
    add_user(store, "ana")
    login(client, "ana")
    r = client.get("/api/v1/export", params={"format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 2
    assert rows[0]["part_id"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["note"] == "'+SUM(A1)"
    sha = rows[0]["media_sha256"].split()
    assert len(sha) == 2 and rows[0]["media_urls"].split()[0].endswith(f"/media/{sha[0]}")
    lines = client.get("/api/v1/export", params={"format": "jsonl", "limit": 1}).text.splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["part_id"] == "=cmd|' /C calc'!A0"  # JSON keeps the exact data
    assert rec["media"][0]["url"].endswith(rec["media"][0]["sha256"])
    assert client.get(rec["media"][0]["url"]).headers["content-type"] == "image/jpeg"


@SQLITE_ONLY
def test_untrusted_text_renders_as_text_in_pages(client: TestClient, store: Store) -> None:
    (rid,) = seed(
        store,
        ["REVIEW"],
        part_id="<img src=x onerror=alert(1)>",
        rationale="<script>alert('r')</script>",
        note="</dd><b>bold</b>",
    )
    add_user(store, "ana")
    login(client, "ana")
    for page in (client.get("/queue").text, client.get(f"/inspections/{rid}").text):
        assert "<script>alert" not in page and "<img src=x" not in page
    detail = client.get(f"/inspections/{rid}").text
    assert "&lt;script&gt;alert(&#39;r&#39;)&lt;/script&gt;" in detail
    assert "&lt;/dd&gt;&lt;b&gt;bold&lt;/b&gt;" in detail


@SQLITE_ONLY
def test_a_bidi_override_in_a_part_id_shows_as_its_escape_not_as_another_word(
    client: TestClient, store: Store
) -> None:
    unsafe = {"part_id": "P-\u202eLIAF\u202c", "note": "ok\u200b then\nnext"}
    (rid,) = seed(store, ["REVIEW"], unchecked=unsafe)
    add_user(store, "ana")
    login(client, "ana")
    for page in (client.get("/queue").text, client.get(f"/inspections/{rid}").text):
        assert "\u202e" not in page and "\u202c" not in page and "\u200b" not in page
        assert "P-\\u202eLIAF\\u202c" in page
    detail = client.get(f"/inspections/{rid}").text
    assert "ok\\u200b then\nnext" in detail  # the note keeps its line break
    # The API and the JSON export carry the exact data; a client decides how to show it.
    assert client.get(f"/api/v1/inspections/{rid}").json()["part_id"] == "P-\u202eLIAF\u202c"


@SQLITE_ONLY
def test_the_tiny_random_model_is_announced_until_a_site_adapter_serves(
    store: Store, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Verdicts on the base name it "base"; those stored before that name say "vision".
    (base_rid,) = seed(store, ["REVIEW"], adapter="base")
    (older_rid,) = seed(store, ["REVIEW"], adapter="vision", start=T0 + timedelta(hours=2))
    (adapted_rid,) = seed(store, ["REVIEW"], adapter="osaka-v1", start=T0 + timedelta(hours=1))
    add_user(store, "ana")
    tiny = create_app(Settings(**SETTINGS, model={"path": tiny_model_dir}), store)
    with TestClient(tiny) as client:
        login(client, "ana")
        assert "random until a site adapter is trained" in client.get("/queue").text
        assert 'id="random-verdict"' in client.get(f"/inspections/{base_rid}").text
        assert 'id="random-verdict"' in client.get(f"/inspections/{older_rid}").text
        assert 'id="random-verdict"' not in client.get(f"/inspections/{adapted_rid}").text
    unknown = create_app(Settings(**SETTINGS, model={"path": tmp_path / "elsewhere"}), store)
    with TestClient(unknown) as client:
        login(client, "ana")
        assert 'id="random-model"' not in client.get("/queue").text
        assert 'id="random-verdict"' not in client.get(f"/inspections/{base_rid}").text


@SQLITE_ONLY
def test_media_is_served_by_hash_to_logged_in_users_only(client: TestClient, store: Store) -> None:
    (rid,) = seed(store, ["REVIEW"])
    add_user(store, "ana")
    login(client, "ana")
    media = client.get(f"/api/v1/inspections/{rid}").json()["media"]
    audio = client.get(f"/media/{media[1]['sha256']}")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.headers["x-content-type-options"] == "nosniff"
    assert client.get("/media/" + "0" * 64).status_code == 404
    assert client.get("/media/..%2f..%2fetc%2fpasswd").status_code == 404
    with TestClient(client.app) as stranger:
        assert stranger.get(f"/media/{media[0]['sha256']}").status_code == 401


@SQLITE_ONLY
def test_password_change_ends_sessions(client: TestClient, store: Store) -> None:
    from inspector.review.passwords import hash_password
    from inspector.store import users

    add_user(store, "ana")
    login(client, "ana")
    assert client.get("/api/v1/me").status_code == 200
    with store.db.write() as session:
        users.set_password(session, "ana", hash_password(PASSWORD + "!", CHEAP))
    assert client.get("/api/v1/me").status_code == 401
