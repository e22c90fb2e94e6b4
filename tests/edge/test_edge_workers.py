"""The station's view of the workers: re-sends wait while the workers say a request waits."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from edge.workers import WorkerWatch
from inspector.mqtt import Message
from inspector.protocol import WorkerState, WorkerStatus, status_topic


def _status(
    worker: str,
    state: WorkerState = "online",
    backlog: bool = False,
    sites: list[str] | None = None,
    at: float | None = None,
) -> WorkerStatus:
    return WorkerStatus(
        worker_id=worker,
        state=state,
        version="1",
        updated_at=datetime.fromtimestamp(time.time() if at is None else at, UTC),
        sites=sites or [],
        backlog=backlog,
        heartbeat_s=10,
    )


def _message(status: WorkerStatus, retain: bool = False) -> Message:
    return Message(status_topic(status.worker_id), status.to_payload(), 1, retain, 1, False)


def test_nothing_known_about_the_workers_holds_nothing() -> None:
    watch = WorkerWatch("plant-a")
    assert not watch.hold_resends()
    watch.handle(Message(status_topic("w1"), b"{not json", 1, False, 1, False))
    assert not watch.hold_resends()


def test_a_live_worker_without_backlog_lets_re_sends_go_one_with_backlog_holds_them() -> None:
    watch = WorkerWatch("plant-a")
    watch.handle(_message(_status("w1")))
    watch.handle(_message(_status("w2")))
    assert not watch.hold_resends()
    watch.handle(_message(_status("w2", backlog=True)))
    assert watch.hold_resends()
    watch.handle(_message(_status("w2", backlog=False)))
    assert not watch.hold_resends()


def test_workers_that_are_away_hold_nothing_back() -> None:
    watch = WorkerWatch("plant-a")
    watch.handle(_message(_status("w1", state="offline")))
    assert not watch.hold_resends()
    watch.handle(_message(_status("w2", backlog=True)))
    watch.handle(_message(_status("w2", state="offline", backlog=True)))
    assert not watch.hold_resends()


def test_a_status_counts_three_heartbeats_only() -> None:
    watch = WorkerWatch("plant-a")
    now = time.time()
    watch.handle(_message(_status("w1", backlog=True)), now=now)
    assert watch.hold_resends(now=now + 29)
    # Silent for three heartbeats: the worker is as good as away.
    assert watch.live(now=now + 31) == [] and not watch.hold_resends(now=now + 31)
    # A retained backlog report from long ago, e.g. left by a broker crash, is not live.
    old = WorkerWatch("plant-a")
    old.handle(_message(_status("w1", backlog=True, at=now - 600), retain=True), now=now)
    assert old.live(now=now) == []


def test_workers_of_other_sites_are_ignored() -> None:
    watch = WorkerWatch("plant-a")
    watch.handle(_message(_status("w9", backlog=True, sites=["plant-b"])))
    assert not watch.hold_resends()
    watch.handle(_message(_status("w1", backlog=True, sites=["plant-a", "plant-b"])))
    assert watch.hold_resends()
