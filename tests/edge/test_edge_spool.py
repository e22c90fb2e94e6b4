"""The durable spool: commit before publish, leave only after PUBACK, bounded by a budget."""

from __future__ import annotations

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


def test_entries_survive_reopening_and_leave_only_when_delivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    entries = [_entry(i) for i in range(3)]
    for e in entries:
        spool.add(e)
    spool.close()
    again = Spool(tmp_path / "s.db")
    assert again.request_ids() == [e.request_id for e in entries]
    batch = again.next_batch(2, exclude={entries[0].request_id})
    assert [i.request_id for i in batch] == [entries[1].request_id, entries[2].request_id]
    again.mark_delivered(entries[0].request_id)
    stats = again.stats()
    assert stats.depth == 2 and stats.awaiting_verdict == 3
    assert stats.oldest_captured_at == pytest.approx(entries[1].captured_at)
    again.close()


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


def test_history_is_pruned_but_unsent_captures_never_are(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    sent, unsent = _entry(0, source="folder:old.jpg|1|1"), _entry(1)
    spool.add(sent)
    spool.add(unsent)
    spool.mark_delivered(sent.request_id)
    assert spool.prune(older_than=time.time()) == 1
    assert spool.capture(sent.request_id) is None and not spool.has_source("folder:old.jpg|1|1")
    assert spool.capture(unsent.request_id) is not None
    assert spool.request_ids() == [unsent.request_id]
    spool.close()
