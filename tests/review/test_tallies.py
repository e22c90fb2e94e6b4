"""The kept latest pointers and tallies follow every write, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from inspector.protocol import Decision
from inspector.store import ReviewInput, Store, latest_verdict_message, record_review, tallies
from inspector.store import stats as stats_store
from inspector.store.queue import QueueFilter, unreviewed_counts
from inspector.store.stats import StatsFilter
from inspector.store.verdicts import record_verdicts
from tests.review.helpers import add_user, login, seed


def _new_verdict(store: Store, rid: str, verdict: str, adapter: str) -> None:
    """A later verdict on the same inspection (another adapter), as a re-run would store."""
    with store.db.read() as session:
        old = latest_verdict_message(session, rid)
    p_pass = {"PASS": 0.9, "FAIL": 0.2}[verdict]
    again = old.model_copy(
        update={"verdict": Decision(verdict), "p_pass": p_pass, "adapter": adapter}
    )
    with store.db.write() as session:
        record_verdicts(session, [again])


def _review(store: Store, rid: str, final: str, decision: str = "override") -> None:
    review = ReviewInput(
        review_id=uuid.uuid4(),
        request_id=uuid.UUID(rid),
        decision="override" if decision == "override" else "confirm",
        final_verdict="PASS" if final == "PASS" else "FAIL",
        reviewer="ana",
        defect_type="dent" if final == "FAIL" else None,
    )
    with store.db.write() as session:
        record_review(session, review)


def _numbers(store: Store) -> dict[str, Any]:
    with store.db.read() as session:
        flt = StatsFilter()
        return {
            "verdicts": sorted(stats_store.verdict_counts(session, flt)),
            "hours": sorted(stats_store.hourly_counts(session, flt)),
            "reviewed": sorted(stats_store.reviewed_counts(session, flt)),
            "histogram": sorted(stats_store.reviewed_histogram(session, flt)),
            "counts": unreviewed_counts(session, QueueFilter(audit_percent=100), 1),
        }


def test_new_verdicts_and_re_reviews_move_the_numbers_as_a_rebuild_counts_them(
    client: TestClient, store: Store
) -> None:
    first, second, third, fourth = seed(store, ["PASS", "FAIL", "REVIEW", "REVIEW"])
    add_user(store, "ana")
    _review(store, first, "FAIL")  # an escape
    _review(store, second, "FAIL", "confirm")
    _new_verdict(store, second, "PASS", "osaka-v2")  # now an escape too
    _new_verdict(store, third, "FAIL", "osaka-v2")
    _review(store, third, "FAIL", "confirm")
    _review(store, third, "PASS")  # the latest review counts: a false reject
    kept = _numbers(store)

    login(client, "ana")
    stats = client.get("/api/v1/stats").json()
    assert stats["confusion"]["PASS"] == {"PASS": 0, "FAIL": 2}
    assert stats["confusion"]["FAIL"] == {"PASS": 1, "FAIL": 0}
    assert stats["total"]["inspections"] == 4 and stats["total"]["reviewed"] == 3
    groups = {g["adapter"]: g["inspections"] for g in stats["groups"]}
    assert groups == {"osaka-v1": 2, "osaka-v2": 2}
    # ana recorded answers on all but the fourth, so only the fourth is left in her queue.
    assert kept["counts"] == {"review": 1, "fail": 0, "audit": 0, "shadow": 0}
    queue = client.get("/api/v1/queue", params={"tab": "fail", "reviewed": "any"}).json()
    assert [(i["request_id"], i["latest_review"]) for i in queue["items"]] == [(third, "PASS")]
    assert (
        client.get("/api/v1/queue", params={"tab": "review"}).json()["items"][0]["request_id"]
        == fourth
    )

    with store.db.write() as session:
        tallies.rebuild(session)
    assert _numbers(store) == kept


def test_the_queue_filters_and_orders_by_the_latest_verdict_after_a_re_run_as_a_rebuild_does(
    client: TestClient, store: Store
) -> None:
    first, second = seed(store, ["FAIL", "FAIL"])
    with store.db.read() as session:
        old = latest_verdict_message(session, first)
    again = old.model_copy(
        update={"verdict": Decision.REVIEW, "p_pass": 0.45, "confidence": 0.55, "adapter": "v9"}
    )
    with store.db.write() as session:
        record_verdicts(session, [again])
    add_user(store, "ana")
    login(client, "ana")

    def shown(**params: Any) -> list[tuple[str, str, float, float, str]]:
        items = client.get("/api/v1/queue", params=params).json()["items"]
        return [
            (i["request_id"], i["verdict"], i["confidence"], i["p_pass"], i["adapter"])
            for i in items
        ]

    def answers() -> list[Any]:
        return [
            shown(tab="review", adapter="v9", max_confidence=0.6),
            shown(tab="review", min_confidence=0.6),
            shown(tab="fail", adapter="v9"),
            shown(tab="fail", adapter="osaka-v1", min_confidence=0.85, part_id="P-000"),
            shown(tab="all", verdict="REVIEW", part_id="P-0000"),
            client.get("/api/v1/queue", params={"adapter": "osaka-v1"}).json()["counts"],
        ]

    kept = answers()
    assert kept[0] == kept[4] == [(first, "REVIEW", 0.55, 0.45, "v9")]
    assert kept[1] == kept[2] == []
    assert kept[3] == [(second, "FAIL", 0.9, 0.1, "osaka-v1")]
    assert kept[5] == {"review": 0, "fail": 1, "audit": 0, "shadow": 0}
    with store.db.write() as session:
        tallies.rebuild(session)
    assert answers() == kept
