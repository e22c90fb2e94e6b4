"""Delivery drills: broker, worker and station crashes cost time, never an inspection.

Each drill runs a private Mosquitto (persistence in a temp dir, autosave every 30 s as in the
deploy config; the broker crash drill never autosaves), real `inspector serve` workers on the
tiny model and real `inspector edge run` stations, and ends with the same checks: every
capture has exactly one inspection row and one verdict row, and every station has the answer
to every capture it took; each drill's counts go to the run's summary. Timeouts are
shortened so a drill takes seconds: verdict_timeout_s 3, resend_max_s 6.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from edge.spool import read_stats
from tests.fixtures.drills import Drill, Process
from tests.fixtures.edge import wait_until

# Bounded twice over: each wait inside a drill has its own limit, and a slow host gets room.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _spool_stats(drill: Drill, station: Process) -> tuple[int, int, int]:
    st = read_stats(drill.root / station.name / "spool.db", 2**30)
    return (-1, -1, -1) if st is None else (st.depth, st.unanswered, st.awaiting_verdict)


# No autosave comes round during this drill, however slow the host: what the broker
# acknowledged before the kill is surely gone, as when it crashes just before a save.
@pytest.mark.parametrize("private_broker", [3600], indirect=True)
def test_broker_kill_9_after_the_pubacks_then_broker_and_worker_back(
    make_drill: Callable[[str], Drill], sqlite_url: str
) -> None:
    drill = make_drill(sqlite_url)
    drill.session_for("w1")  # a stopped worker: the broker queues its share of requests
    station = drill.station("s1")
    station.start()
    drill.drop_photos(station, 10)
    # Ten PUBACKs: nothing is left unsent, all ten wait for an answer.
    assert wait_until(lambda: _spool_stats(drill, station) == (0, 10, 10), 30), drill.logs()
    drill.broker.kill()  # before any autosave: the queued requests are gone
    drill.broker.start()
    worker = drill.worker("w1")
    worker.start()
    assert wait_until(lambda: drill.all_answered(station, expected=10), 90), drill.logs()
    assert station.stop() == 0 and worker.stop() == 0
    drill.check("broker kill -9 after PUBACKs", [station], sent=10)
    assert drill.station_counts(station).resent >= 10  # every one of them had to be re-sent


def test_two_workers_one_killed_for_good_every_request_still_gets_its_verdict(
    make_drill: Callable[[str], Drill], pg_url: str
) -> None:
    drill = make_drill(pg_url)
    # A short session, so the dead worker's share stops being handed out quickly.
    keep, doomed = drill.worker("keep", session_expiry_s=4), drill.worker("doomed", 4)
    for w in (keep, doomed):
        w.start()
    for w in (keep, doomed):
        drill.watch.wait_online(w)
    station = drill.station("s1")
    station.start()
    drill.drop_photos(station, 40)
    assert wait_until(lambda: drill.station_counts(station).answered >= 4, 60), drill.logs()
    doomed.kill()  # never restarted: its session holds every other request until it expires
    assert wait_until(lambda: drill.all_answered(station, expected=40), 100), drill.logs()
    assert station.stop() == 0 and keep.stop() == 0
    drill.check("two workers, one kill -9 for good", [station], sent=40)


def test_station_kill_9_while_re_sending_then_restarted(
    make_drill: Callable[[str], Drill], sqlite_url: str
) -> None:
    drill = make_drill(sqlite_url)
    station = drill.station("s1", verdict_timeout_s=1, resend_max_s=1)
    station.start()
    drill.drop_photos(station, 10)
    # No worker has subscribed yet: the broker acknowledges and drops every request, and the
    # station keeps re-sending them.
    assert wait_until(lambda: drill.station_counts(station).resent >= 10, 30), drill.logs()
    station.kill()
    worker = drill.worker("w1")
    worker.start()
    drill.watch.wait_online(worker)
    station.start()
    assert wait_until(lambda: drill.all_answered(station, expected=10), 60), drill.logs()
    assert "sent capture(s) still without an answer" in station.text()
    assert station.stop() == 0 and worker.stop() == 0
    drill.check("station kill -9 while re-sending", [station], sent=10)


CHAOS_SEED = 20261201
CHAOS_REQUESTS = 300  # 100 from each of 3 stations
CHAOS_EVENTS = 4


@pytest.mark.timeout(400)  # every worker restart reloads the model: slow on a loaded host
def test_seeded_chaos_workers_and_broker_killed_at_random_nothing_lost(
    make_drill: Callable[[str], Drill], pg_url: str
) -> None:
    rng = random.Random(CHAOS_SEED)
    drill = make_drill(pg_url)
    workers = [drill.worker(f"w{i}", session_expiry_s=10) for i in range(2)]
    stations = [drill.station(f"s{i}") for i in range(3)]
    for p in workers + stations:
        p.start()
    for w in workers:
        drill.watch.wait_online(w)
    per_batch = CHAOS_REQUESTS // (3 * (CHAOS_EVENTS + 1))
    events: list[str] = []
    for _ in range(CHAOS_EVENTS + 1):
        for s in stations:
            drill.drop_photos(s, per_batch)
        time.sleep(rng.uniform(0.5, 3.0))  # a random moment, not a synchronisation
        if len(events) == CHAOS_EVENTS:
            break
        if rng.random() < 0.5:
            drill.broker.kill()
            drill.broker.start()
            events.append("broker kill -9")
        else:
            victim = rng.choice(workers)
            if victim.running:
                victim.kill()
            victim.start()
            events.append(f"{victim.name} kill -9")
    left = CHAOS_REQUESTS - drill.photos
    for i in range(left):
        drill.drop_photos(stations[i % 3], 1)
    assert wait_until(lambda: drill.all_answered(*stations, expected=CHAOS_REQUESTS), 240), (
        drill.logs()
    )
    for p in stations + workers:
        p.stop()
    drill.log_counts("chaos", seed=CHAOS_SEED, events=" / ".join(events))
    drill.check("seeded chaos", stations, sent=CHAOS_REQUESTS)
