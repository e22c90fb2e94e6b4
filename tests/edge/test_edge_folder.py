"""The watched folder: dropped photos become requests, then move to done/ (or failed/)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.folder import FolderWatcher
from edge.spool import Spool, SpoolFull
from inspector.protocol import TopicKind, parse_request
from tests.fixtures.edge import (
    BrokerObserver,
    TcpRelay,
    jpeg_bytes,
    png_bytes,
    screen,
    wait_until,
)


def test_fifty_files_dropped_in_the_folder_become_fifty_requests(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    settings = make_edge_settings(folder={"path": str(inbox), "poll_s": 0.1, "settle_s": 0.2})
    seen = observe(settings.station.key.topic(TopicKind.REQUEST))
    with EdgeAgent(settings, quiet_console) as agent:
        for i in range(50):
            (inbox / f"part-{i:03d}.jpg").write_bytes(jpeg_bytes(32, 32, seed=i))
        (inbox / "notes.txt").write_text("not a photo, left alone")
        got = seen.wait_for(50, 30)
        assert agent.folder is not None
        done = agent.folder.done
        assert wait_until(lambda: len(list(done.iterdir())) == 50, 10)
    parts = sorted(parse_request(m.payload).part_id for m in got)
    assert parts == [f"part-{i:03d}" for i in range(50)]
    assert len({parse_request(m.payload).request_id for m in got}) == 50
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["notes.txt"]


def test_unreadable_files_go_to_failed_and_taken_files_are_never_taken_twice(
    tmp_path: Path,
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
) -> None:
    inbox = tmp_path / "inbox"
    settings = make_edge_settings(folder={"path": str(inbox), "settle_s": 0})
    spool = Spool(tmp_path / "spool.db")
    taken: list[str] = []
    warnings: list[str] = []

    def take(path: Path, key: str) -> None:
        agent = EdgeAgent(settings, quiet_console)
        try:
            agent.capture_file(path, source=key)
        finally:
            agent.stop()
        taken.append(path.name)

    watcher = FolderWatcher(settings.folder, take, spool.has_source, warnings.append)
    (inbox / "broken.jpg").write_bytes(b"not a jpeg at all")
    good = inbox / "good.jpg"
    good.write_bytes(jpeg_bytes())
    assert watcher.scan() == 1
    assert taken == ["good.jpg"]
    assert (watcher.failed / "broken.jpg").exists() and "broken.jpg" in warnings[0]
    # A crash after spooling but before the move leaves the file in place: put it back.
    (watcher.done / "good.jpg").replace(good)
    assert watcher.scan() == 0
    assert taken == ["good.jpg"] and not good.exists()
    spool.close()


def test_full_spool_leaves_photos_in_the_folder_until_answers_free_it(
    make_edge_settings: Callable[..., EdgeSettings],
    relay: TcpRelay,
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    settings = make_edge_settings(
        broker={"port": relay.port},
        spool={"max_bytes": 2**20},
        folder={"path": str(inbox), "poll_s": 0.1, "settle_s": 0},
    )
    seen = observe(settings.station.key.topic(TopicKind.REQUEST))
    with EdgeAgent(settings, quiet_console) as agent:
        for i in range(3):  # ~770 KB each on the wire: one fits in a 1 MiB spool
            (inbox / f"big-{i}.png").write_bytes(png_bytes(480, 400, seed=i))
        assert wait_until(lambda: "photos wait in" in screen(quiet_console), 10)
        assert agent.stats().depth == 1
        assert len(list(inbox.glob("*.png"))) == 2
        relay.start()
        # Reaching the broker frees nothing: only an answer does, one capture at a time.
        for n in range(1, 4):
            got = seen.wait_for(n, 30)
            assert len(list(inbox.glob("*.png"))) == 3 - n
            seen.reject(got[-1].payload)
        assert wait_until(lambda: agent.stats().unanswered == 0, 10)
    assert sorted(parse_request(m.payload).part_id for m in got) == ["big-0", "big-1", "big-2"]
    assert "Normal disconnection" not in screen(quiet_console)  # our own stop is no news


def test_a_full_spool_is_reported_once_not_on_every_scan(
    tmp_path: Path,
    make_edge_settings: Callable[..., EdgeSettings],
) -> None:
    inbox = tmp_path / "inbox"
    settings = make_edge_settings(folder={"path": str(inbox), "settle_s": 0})
    warnings: list[str] = []

    def take(path: Path, key: str) -> None:
        raise SpoolFull("spool is full")

    watcher = FolderWatcher(settings.folder, take, lambda key: False, warnings.append)
    (inbox / "a.jpg").write_bytes(jpeg_bytes())
    assert watcher.scan() == 0
    assert watcher.scan() == 0
    assert len(warnings) == 1 and (inbox / "a.jpg").exists()
