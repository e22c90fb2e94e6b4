"""The durable spool: commit before publish, leave only with the answer, bounded by a budget."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from edge.spool import MiB, Spool, SpoolEntry, SpoolFull, agent_running, read_stats


def _entry(n: int, size: int = 100, source: str | None = None) -> SpoolEntry:
    return SpoolEntry(
        request_id=str(uuid.uuid4()),
        part_id=f"p{n}",
        topic="t",
        payload=bytes(size),
        captured_at=time.time() - 10 + n,
        original_size=(10, 10),
        size=(10, 10),
        source=source,
    )


def test_entries_survive_reopening_and_are_not_sent_twice_at_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    entries = [_entry(i) for i in range(3)]
    for e in entries:
        spool.add(e)
    spool.close()
    again = Spool(tmp_path / "s.db")
    assert again.request_ids() == [e.request_id for e in entries]
    batch = again.next_batch(2, exclude={entries[0].request_id})
    assert [i.request_id for i in batch] == [entries[1].request_id, entries[2].request_id]
    again.mark_sent(entries[0].request_id, resend_at=time.time() + 60)
    stats = again.stats()
    assert stats.depth == 2 and stats.awaiting_verdict == 3 and stats.unanswered == 3
    assert stats.oldest_captured_at == pytest.approx(entries[1].captured_at)
    assert stats.oldest_unanswered_at == pytest.approx(entries[0].captured_at)
    again.close()


def test_a_sent_capture_keeps_its_payload_until_the_answer_and_comes_due_again(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.db")
    e = _entry(0, size=300)
    spool.add(e)
    now = time.time()
    spool.mark_sent(e.request_id, resend_at=now + 30, at=now)
    assert spool.next_batch(5, set(), now=now + 29) == []
    (due,) = spool.next_batch(5, set(), now=now + 31)
    assert due.request_id == e.request_id and due.payload == bytes(300) and due.sends == 1
    # While the workers report a backlog, a request sent after the cutoff is held back.
    assert spool.next_batch(5, set(), now=now + 31, resend_sent_before=now - 1) == []
    assert spool.next_batch(5, set(), now=now + 31, resend_sent_before=now + 1) != []
    spool.mark_sent(e.request_id, resend_at=now + 90, at=now + 31)
    stats = spool.stats()
    assert (stats.depth, stats.unanswered, stats.resent, stats.bytes) == (0, 1, 1, 300)
    before = spool.record_outcome(e.request_id, "PASS")
    assert before is not None and before.resends == 1 and before.outcome is None
    stats = spool.stats()
    assert (stats.unanswered, stats.bytes, stats.awaiting_verdict) == (0, 0, 0)
    assert spool.next_batch(5, set(), now=now + 1000) == []
    # A second answer (the re-send's) is a repeat; the first one stays recorded.
    repeat = spool.record_outcome(e.request_id, "FAIL")
    assert repeat is not None and repeat.outcome == "PASS"
    assert spool.capture(e.request_id).outcome == "PASS"  # type: ignore[union-attr]
    spool.close()


def test_a_rejection_also_ends_the_wait(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    e = _entry(0)
    spool.add(e)
    spool.mark_sent(e.request_id, resend_at=time.time() + 30)
    spool.record_outcome(e.request_id, "REJECTED")
    assert spool.request_ids() == [] and spool.stats().unanswered == 0
    spool.close()


def test_a_spool_written_before_re_sends_existed_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL
            UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL,
            captured_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT);
        CREATE TABLE captures (request_id TEXT PRIMARY KEY, part_id TEXT NOT NULL,
            source TEXT UNIQUE, captured_at REAL NOT NULL, original_width INTEGER,
            original_height INTEGER, width INTEGER, height INTEGER,
            has_audio INTEGER NOT NULL DEFAULT 0, published_at REAL, outcome TEXT,
            decided_at REAL, flagged_at REAL);
        INSERT INTO outbox (request_id, topic, payload, size, captured_at)
            VALUES ('r1', 't', x'00', 1, 1.0);
        INSERT INTO captures (request_id, part_id, captured_at) VALUES ('r1', 'p1', 1.0);
        """
    )
    db.close()
    spool = Spool(path)
    (item,) = spool.next_batch(5, set())
    assert item.request_id == "r1" and item.sends == 0
    spool.mark_sent("r1", resend_at=time.time() + 30)
    assert spool.capture("r1").sends == 1  # type: ignore[union-attr]
    spool.close()


def test_refused_entries_wait_for_their_retry_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    e = _entry(0)
    spool.add(e)
    spool.mark_failed(e.request_id, "Not authorized", retry_at=time.time() + 60)
    assert spool.next_batch(5, set()) == []
    assert spool.next_batch(5, set(), now=time.time() + 61)[0].attempts == 1
    assert spool.stats().last_error == "Not authorized"
    spool.close()


def test_disk_budget_refuses_new_captures_but_keeps_old_ones(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=MiB, warn_fraction=0.5)
    stats = spool.add(_entry(0, size=600 * 1024))
    assert stats.fill > 0.5
    with pytest.raises(SpoolFull, match=r"spool .* is full .* raise spool\.max_bytes"):
        spool.add(_entry(1, size=600 * 1024))
    assert spool.stats().depth == 1
    spool.close()


def test_disk_budget_counts_captures_the_broker_has_but_nobody_answered(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=MiB)
    first = _entry(0, size=600 * 1024)
    spool.add(first)
    spool.mark_sent(first.request_id, resend_at=time.time() + 30)
    assert spool.stats().depth == 0 and spool.stats().bytes == 600 * 1024
    with pytest.raises(SpoolFull, match="without an answer"):
        spool.add(_entry(1, size=600 * 1024))
    spool.record_outcome(first.request_id, "PASS")
    spool.add(_entry(2, size=600 * 1024))
    spool.close()


def test_only_one_process_owns_a_spool(tmp_path: Path) -> None:
    first, second = Spool(tmp_path / "s.db"), Spool(tmp_path / "s.db")
    assert not agent_running(tmp_path / "s.db")
    assert first.try_own()
    assert not second.try_own()
    assert agent_running(tmp_path / "s.db") and second.owned_elsewhere()
    first.close()
    assert not agent_running(tmp_path / "s.db")
    assert second.try_own()
    second.close()


def test_sources_verdicts_and_overdue_captures_are_remembered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    a, b = _entry(0, source="folder:a.jpg|1|2"), _entry(1)
    spool.add(a)
    spool.add(b)
    assert spool.has_source("folder:a.jpg|1|2") and not spool.has_source("folder:b")
    before = spool.record_outcome(a.request_id, "PASS")
    assert before is not None and before.outcome is None
    assert spool.record_outcome(str(uuid.uuid4()), "FAIL") is None
    late = spool.overdue(time.time())
    assert [r.request_id for r in late] == [b.request_id]
    spool.flag(b.request_id)
    assert spool.overdue(time.time()) == []
    spool.close()
    assert read_stats(tmp_path / "missing.db", MiB) is None
    assert read_stats(tmp_path / "s.db", MiB) is not None


def test_history_is_pruned_but_unanswered_captures_never_are(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    sent, unsent = _entry(0, source="folder:old.jpg|1|1"), _entry(1)
    spool.add(sent)
    spool.add(unsent)
    spool.mark_sent(sent.request_id, resend_at=time.time() + 30)
    assert spool.prune(older_than=time.time()) == 0
    spool.record_outcome(sent.request_id, "PASS")
    assert spool.prune(older_than=time.time()) == 1
    assert spool.capture(sent.request_id) is None and not spool.has_source("folder:old.jpg|1|1")
    assert spool.capture(unsent.request_id) is not None
    assert spool.request_ids() == [unsent.request_id]
    spool.close()
