"""Verdict first in the review app: the detail page, the API and the export say where each
verdict's rationale stands (produced, pending, skipped by the site's policy, not produced).

The states come from the store's own write path: verdicts stored pending, then the worker's
rationale updates and a live worker's expiry of the one whose worker stopped.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import timedelta

from fastapi.testclient import TestClient

from inspector.errors import Code
from inspector.protocol import DefectFinding, RationaleState
from inspector.store import Batch, RationaleUpdate, Store
from tests.review.helpers import T0, add_user, login, seed

PENDING = "Rationale pending…"
SKIPPED = "No rationale: the site's policy skips PASS verdicts"
WORKER_LOST = "Rationale not produced: the worker stopped before writing it"
ENGINE_FAILED = "Rationale not produced: the model failed while writing it (the verdict stands)"


def _update(
    rid: str,
    state: RationaleState,
    rationale: str = "",
    transcript: str | None = None,
    defects: tuple[DefectFinding, ...] = (),
    reason: Code | None = None,
) -> RationaleUpdate:
    """The rationale the deciding worker writes into its verdict (as `seed` stored it)."""
    return RationaleUpdate(
        request_id=rid,
        worker_id="w1",
        model="phi-4-mm",
        adapter="osaka-v1",
        prompt_version="v1",
        state=state,
        rationale=rationale,
        transcript=transcript,
        defects=defects,
        reason=reason,
    )


def _seed_every_state(store: Store) -> dict[str, str]:
    """One inspection per rationale state (two not produced), a minute apart; request_id by
    state, and by reason for the ones not produced."""
    produced, lost, skipped, pending, failed = seed(
        store,
        ["FAIL", "REVIEW", "PASS", "PASS", "FAIL"],
        rationale="",
        rationale_state=RationaleState.PENDING,
    )
    store.answer(
        Batch(
            rationales=[
                _update(
                    produced,
                    RationaleState.PRODUCED,
                    rationale="a dent on the rim",
                    defects=(DefectFinding(type="dent", where="rim"),),
                ),
                # fail_and_review: no rationale for a PASS, only its voice note's transcript.
                _update(skipped, RationaleState.SKIPPED, transcript="looks fine to me"),
                # The model failed decoding after the verdict was out: the worker says so.
                _update(failed, RationaleState.NOT_PRODUCED, reason=Code.RATIONALE_ENGINE_FAILED),
            ]
        )
    )
    # The REVIEW verdict's worker stopped: a live worker marks it once its time is up. The
    # last verdict, decided after the cut-off, is still waiting for its rationale.
    marked = store.expire_rationales(T0 + timedelta(minutes=2), "w2", T0 + timedelta(minutes=3))
    assert [str(m.request_id) for m in marked] == [lost]
    return {
        "produced": produced,
        "rationale.worker_lost": lost,
        "skipped": skipped,
        "pending": pending,
        "rationale.engine_failed": failed,
    }


def _state(key: str) -> str:
    return "not_produced" if key.startswith("rationale.") else key


def _rationale_box(page: str) -> tuple[str, str]:
    """The detail page's rationale box: its state attribute and the text it shows."""
    found = re.search(
        r'id="rationale" data-state="([a-z_]+)"(?: data-reason="[a-z_.]+")?>([^<]*)</p>', page
    )
    assert found is not None, "no rationale box on the page"
    return found.group(1), html.unescape(found.group(2))


def test_the_detail_page_says_where_each_verdicts_rationale_stands(
    client: TestClient, store: Store
) -> None:
    rids = _seed_every_state(store)
    add_user(store, "ana")
    login(client, "ana")
    boxes = {
        state: _rationale_box(client.get(f"/inspections/{rid}").text) for state, rid in rids.items()
    }
    assert boxes == {
        "produced": ("produced", "a dent on the rim"),
        "pending": ("pending", PENDING),
        "skipped": ("skipped", SKIPPED),
        "rationale.worker_lost": ("not_produced", WORKER_LOST),
        "rationale.engine_failed": ("not_produced", ENGINE_FAILED),
    }
    skipped_page = client.get(f"/inspections/{rids['skipped']}").text
    assert "looks fine to me" in skipped_page, "a skipped rationale keeps its transcript"


def test_the_api_and_the_export_carry_each_verdicts_rationale_state(
    client: TestClient, store: Store
) -> None:
    rids = _seed_every_state(store)
    add_user(store, "ana")
    login(client, "ana")
    for key, rid in rids.items():
        body = client.get(f"/api/v1/inspections/{rid}").json()
        assert body["verdict"]["rationale_state"] == _state(key)
        assert [v["rationale_state"] for v in body["verdicts"]] == [_state(key)]
        # A rationale not produced says why: the worker stopped, or the model failed.
        reason = key if key.startswith("rationale.") else None
        assert body["verdict"]["rationale_reason"] == reason
    produced = client.get(f"/api/v1/inspections/{rids['produced']}").json()["verdict"]
    assert produced["rationale"] == "a dent on the rim"
    assert produced["defects"] == [{"type": "dent", "where": "rim"}]
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert "rationale_state" in schema["VerdictOut"]["required"]

    by_rid = {v: _state(k) for k, v in rids.items()}
    r = client.get("/api/v1/export", params={"format": "csv", "tab": "all"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["request_id"]: row["rationale_state"] for row in rows} == by_rid
    header = r.text.splitlines()[0].split(",")
    assert header.index("rationale_state") == header.index("rationale") + 1
    lines = client.get("/api/v1/export", params={"format": "jsonl", "tab": "all"}).text
    records = [json.loads(line) for line in lines.splitlines()]
    assert {rec["request_id"]: rec["rationale_state"] for rec in records} == by_rid
    # Why a rationale was not produced is the last column, after every earlier one.
    assert header[-1] == "rationale_reason"
    assert header.index("media_urls") == header.index("media_sha256") + 1
    reasons = {k: v for k, v in rids.items() if k.startswith("rationale.")}
    assert {
        row["rationale_reason"]: row["request_id"] for row in rows if row["rationale_reason"]
    } == reasons
    assert {
        rec["rationale_reason"]: rec["request_id"] for rec in records if rec["rationale_reason"]
    } == reasons
