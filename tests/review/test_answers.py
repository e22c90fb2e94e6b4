"""One truth for "reviewed": every path that records an answer counts it as the recorder's own,
and a withdrawal takes it out of every count, the queue label and new dataset snapshots."""

from __future__ import annotations

from inspector.demo.loop import record_reviews
from inspector.store import Store, tallies
from inspector.store import stats as stats_store
from inspector.store.datasets import reviewed_inspections
from inspector.store.filters import Cursor
from inspector.store.queue import QueueFilter, queue_page, unreviewed_counts
from inspector.store.reviews import withdraw_review
from inspector.store.stats import StatsFilter
from inspector.store.users import get_user
from tests.review.helpers import add_user, seed


def _counts(store: Store, user_id: int) -> dict[str, int]:
    with store.db.read() as session:
        return unreviewed_counts(session, QueueFilter(audit_percent=100), user_id)


def _reviewed(store: Store) -> list[tuple[str, str, str, str, int]]:
    with store.db.read() as session:
        return sorted(stats_store.reviewed_counts(session, StatsFilter()))


def test_the_demo_answers_count_as_the_demo_users_own_and_a_withdrawal_undoes_them_everywhere(
    store: Store,
) -> None:
    rids = seed(store, ["REVIEW", "PASS", "FAIL"])
    add_user(store, "demo")
    with store.db.read() as session:
        demo = get_user(session, "demo")
    assert demo is not None
    kinds = {"a": (rids[0], "scratch"), "b": (rids[1], "ok"), "c": (rids[2], "dent")}
    record_reviews(store, kinds)  # type: ignore[arg-type]
    assert _counts(store, demo.id) == {"review": 0, "fail": 0, "audit": 0, "shadow": 0}
    with store.db.read() as session:
        decisions = {r.request_id: r.decision for r in reviewed_inspections(session, "osaka")}
    # The REVIEW verdict was answered, never "confirmed" by its leaning.
    assert decisions == {rids[0]: "answer", rids[1]: "confirm", rids[2]: "confirm"}
    before = _reviewed(store)

    with store.db.write() as session:
        withdrawal = withdraw_review(session, demo.id, "demo", rids[0], via="page")
    assert withdrawal is not None and withdrawal.final_verdict == "FAIL"
    assert _counts(store, demo.id)["review"] == 1
    with store.db.read() as session:
        assert rids[0] not in {r.request_id for r in reviewed_inspections(session, "osaka")}
        items, _ = queue_page(session, QueueFilter(tab="all", reviewed=None), demo.id)
    assert {i.request_id: i.latest_review for i in items}[rids[0]] is None
    after = _reviewed(store)
    assert sum(row[-1] for row in after) == sum(row[-1] for row in before) - 1
    kept = _reviewed(store)
    with store.db.write() as session:
        tallies.rebuild(session)
    assert _reviewed(store) == kept


def test_the_review_tab_pages_most_uncertain_first_then_newest_without_repeats(
    store: Store,
) -> None:
    p_pass = [0.45, 0.6, 0.52, 0.45, 0.35, 0.55, 0.48]
    rids = seed(store, ["REVIEW"] * 7, p_pass=p_pass)
    add_user(store, "ana")
    flt = QueueFilter(tab="review")
    seen: list[str] = []
    after: Cursor | None = None
    with store.db.read() as session:
        while True:
            items, after = queue_page(session, flt, 1, after, limit=2)
            seen += [i.request_id for i in items]
            if after is None:
                break
            after = Cursor.parse(after.token())  # through its text, as a page passes it
    expected = sorted(range(7), key=lambda n: (max(p_pass[n], 1 - p_pass[n]), -n))
    assert seen == [rids[n] for n in expected]
    assert len(set(seen)) == 7
