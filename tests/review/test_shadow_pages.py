"""Shadow adapters in the review app, on SQLite and PostgreSQL: the queue's shadow tab lists
where the site's shadow adapter decided otherwise (unreviewed first-class, paged like every
tab), the detail page shows shadow verdicts apart as "shadow (not published)", the numbers
page puts champion and challenger side by side with the rates of `inspector.quality`, and
exports keep shadow verdicts out of the verdict's columns.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inspector.protocol import Decision
from inspector.quality import AdapterRef
from inspector.review import create_app
from inspector.settings import Settings
from inspector.store import Store
from inspector.store.adapters import register_adapter
from inspector.store.export import iter_export
from inspector.store.filters import VerdictFilter
from inspector.store.shadow import record_shadow_verdicts, reviewed_pairs
from inspector.train.registry import shadow
from tests.core.helpers import shadow_verdict_for
from tests.review.helpers import SETTINGS, add_user, csrf_of, login, seed

SHA = "a" * 64


def _settings(review: dict[str, Any], osaka: dict[str, Any]) -> Settings:
    data: dict[str, Any] = {
        **SETTINGS,
        "review": {**SETTINGS["review"], **review},  # type: ignore[dict-item]
        "sites": {"osaka": {**SETTINGS["sites"]["osaka"], **osaka}},  # type: ignore[index]
    }
    return Settings.model_validate(data)


def _candidate(store: Store) -> str:
    with store.db.write() as session:
        return register_adapter(
            session,
            site="osaka",
            name="osaka",
            path="osaka/adapter.safetensors",
            sha256=SHA,
            base_model="b" * 64,
            actor="trainer",
        ).ref


def _judged(store: Store, version: int, verdicts: dict[str, Decision]) -> None:
    """Shadow verdicts of osaka@`version`, as a worker stores them."""
    adapter = AdapterRef("osaka", version, SHA)
    record_shadow_verdicts(
        store.db,
        [
            shadow_verdict_for(rid, "osaka", adapter, verdict, model="phi-4-mm")
            for rid, verdict in verdicts.items()
        ],
    )


def _shadowed(store: Store) -> list[str]:
    """Four inspections; osaka@2 shadows the site now, osaka@1 did before.

    The champion said FAIL, FAIL, PASS, REVIEW. osaka@2 says PASS on the first and FAIL on
    the second and third (it disagrees on the first and the third) and did not judge the
    fourth; the old osaka@1 disagreed on the second, which no longer counts.
    """
    rids = seed(store, ["FAIL", "FAIL", "PASS", "REVIEW"])
    old = _candidate(store)
    shadow(store, old, 0.5, "qe-lead")
    _judged(store, 1, {rids[1]: Decision.PASS})
    shadow(store, _candidate(store), 0.2, "qe-lead")  # one shadow per site: osaka@1 steps back
    _judged(store, 2, {rids[0]: Decision.PASS, rids[1]: Decision.FAIL, rids[2]: Decision.FAIL})
    return rids


@pytest.fixture
def paged(store: Store) -> Iterator[TestClient]:
    """A client of an app with one inspection per queue page and a shadow gate of 5 reviews."""
    app = create_app(_settings({"page_size": 1}, {"min_shadow_reviews": 5}), store)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def _answer(client: TestClient, rid: str, final: str) -> None:
    body: dict[str, str] = {"decision": "answer", "final_verdict": final}
    if final == "FAIL":
        body["defect_type"] = "dent"
    r = client.post(
        f"/api/v1/inspections/{rid}/reviews", json=body, headers={"X-CSRF-Token": csrf_of(client)}
    )
    assert r.status_code == 201, r.text


def _listed(page: str) -> list[str]:
    return re.findall(r'<tr data-href="[^"]*" data-rid="([^"]+)"', page)


def _tab_count(page: str) -> str:
    found = re.search(r'id="tab-shadow">Shadow disagreements <span class="count">(\d+)<', page)
    assert found is not None
    return found.group(1)


def test_the_shadow_tab_lists_the_current_shadows_disagreements_newest_first_in_pages(
    paged: TestClient, store: Store
) -> None:
    rids = _shadowed(store)
    add_user(store, "ana")
    login(paged, "ana")
    first = paged.get("/queue", params={"tab": "shadow"})
    assert first.status_code == 200
    assert _tab_count(first.text) == "2"
    # The API's counts are the page's: the shadow tab's too.
    assert paged.get("/api/v1/queue/counts").json()["shadow"] == 2
    assert paged.get("/api/v1/queue", params={"tab": "shadow"}).json()["counts"]["shadow"] == 2
    assert _listed(first.text) == [rids[2]]  # one per page, the newest first
    assert "shadow osaka@2 FAIL 0.10" in first.text
    older = re.search(r'href="/queue\?([^"]+)" id="older"', first.text)
    assert older is not None
    second = paged.get("/queue?" + html.unescape(older.group(1)))
    assert _listed(second.text) == [rids[0]]
    assert 'id="older"' not in second.text

    # An answer takes it out of this reviewer's tab, like every tab; "any" keeps it.
    _answer(paged, rids[2], "PASS")
    mine = paged.get("/queue", params={"tab": "shadow"}).text
    assert _tab_count(mine) == "1" and _listed(mine) == [rids[0]]
    api = paged.get("/api/v1/queue", params={"tab": "shadow", "reviewed": "any", "limit": 5})
    assert [i["request_id"] for i in api.json()["items"]] == [rids[2], rids[0]]
    # The reviewed part of the tab is exactly what champion vs challenger calls disagreements.
    with store.db.read() as session:
        pairs = reviewed_pairs(session, "osaka", 2)
    assert [p.request_id for p in pairs if p.disagrees] == [rids[2]]

    # The detail page walks the shadow tab and names where it stands.
    detail = paged.get(f"/inspections/{rids[0]}", params={"tab": "shadow"}).text
    assert "1 of 1 · Shadow disagreements" in detail


def test_the_detail_page_shows_shadow_verdicts_apart_from_the_verdict(
    client: TestClient, store: Store
) -> None:
    rids = _shadowed(store)
    add_user(store, "vi", role="viewer")
    login(client, "vi")
    page = client.get(f"/inspections/{rids[1]}").text
    verdict = re.search(r'id="model-verdict">\s*<span class="verdict v-fail">FAIL</span>', page)
    assert verdict is not None  # the inspection's verdict is the champion's
    section = page.split('id="shadow-verdicts"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(
        r"<tr><td>(.*?)</td><td>(.*?)</td><td>.*?>(\w+)</span></td><td>(.*?)</td>", section
    )
    assert [(a, v, p) for _, a, v, p in rows] == [
        ("osaka@1", "PASS", "0.90"),
        ("osaka@2", "FAIL", "0.10"),
    ]
    assert all("shadow (not published)" in label for label, *_ in rows)
    assert 'id="shadow-verdicts"' not in client.get(f"/inspections/{rids[3]}").text


def test_the_numbers_page_shows_champion_vs_challenger_on_reviewed_live_inspections(
    paged: TestClient, store: Store
) -> None:
    rids = _shadowed(store)
    add_user(store, "ana")
    login(paged, "ana")
    before = paged.get("/stats").text
    row = before.split('id="shadow-osaka"', 1)[1].split("</tr>", 1)[0]
    assert "osaka@2" in row and "20 %" in row and "0 <span" in row and "of 5 the gate needs" in row
    # The first is defective and the challenger passed it; the third is good and the
    # challenger rejected it; the second both called FAIL, rightly.
    for rid, final in zip(rids[:3], ("FAIL", "FAIL", "PASS"), strict=True):
        _answer(paged, rid, final)
    row = paged.get("/stats", params={"site": "osaka"}).text.split('id="shadow-osaka"', 1)[1]
    row = row.split("</tr>", 1)[0]
    assert re.search(r'class="reviewed">3 <span class="muted">of 5', row)
    assert '33.3 % <span class="muted">(1 alike, 2 not)' in row
    assert "2 · 1" in row  # defective · good parts
    escapes = row.split('class="escapes_per_defective_part">', 1)[1].split("</td>", 1)[0]
    assert re.sub(r"<[^>]+>", "", escapes) == "0.0 % → 50.0 %"
    rejects = row.split('class="false_rejects_per_good_part">', 1)[1].split("</td>", 1)[0]
    assert re.sub(r"<[^>]+>", "", rejects) == "0.0 % → 100.0 %"
    assert 'id="shadow-table"' not in paged.get("/stats", params={"site": "kobe"}).text


def test_exports_keep_shadow_verdicts_out_of_the_verdict_columns(
    client: TestClient, store: Store
) -> None:
    rids = _shadowed(store)
    add_user(store, "ana")
    login(client, "ana")
    lines = client.get("/api/v1/export", params={"format": "jsonl", "tab": "all"}).text
    records = {r["request_id"]: r for r in map(json.loads, lines.splitlines())}
    assert records[rids[1]]["verdict"] == "FAIL" and records[rids[1]]["adapter"] == "osaka-v1"
    shadows = records[rids[1]]["shadow_verdicts"]
    assert [(s["adapter"], s["verdict"], s["p_pass"]) for s in shadows] == [
        ("osaka@1", "PASS", 0.9),
        ("osaka@2", "FAIL", 0.1),
    ]
    assert records[rids[3]]["shadow_verdicts"] == []
    table = client.get("/api/v1/export", params={"format": "csv", "tab": "all"}).text
    rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO(table))}
    assert rows[rids[0]]["verdict"] == "FAIL"  # the champion's; osaka@2 said PASS
    assert not any("shadow" in column for column in rows[rids[0]])
    # `inspector verdicts export` writes the same records.
    with store.db.read() as session:
        exported = {r["request_id"]: r for r in iter_export(session, VerdictFilter())}
    assert exported[rids[0]]["shadow_verdicts"][0]["verdict"] == "PASS"
    assert exported[rids[0]]["verdict"] == "FAIL"
