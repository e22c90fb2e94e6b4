"""Durable outbox of captures: SQLite in WAL mode, fsynced on every commit.

A capture is committed here (with its request_id) before it is published, and leaves the
outbox, payload and all, only when the station has its verdict or its rejection: a PUBACK
only says the broker has it, and a broker crash or a dead worker can still lose it. Until
the answer comes the publisher re-sends it when `next_attempt_at` comes round. The
`captures` table remembers every capture for a while, so verdicts can be matched, repeats
and late ones recognised, and watched-folder files never taken twice after a crash.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import SpoolFull as SpoolFull

MiB = 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    captured_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS captures (
    request_id TEXT PRIMARY KEY,
    part_id TEXT NOT NULL,
    source TEXT UNIQUE,
    captured_at REAL NOT NULL,
    original_width INTEGER,
    original_height INTEGER,
    width INTEGER,
    height INTEGER,
    has_audio INTEGER NOT NULL DEFAULT 0,
    published_at REAL,
    outcome TEXT,
    decided_at REAL,
    flagged_at REAL,
    sends INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS captures_awaiting ON captures (outcome, flagged_at, captured_at);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at);
"""

# Columns added after the first release: a spool file written by an older agent gains them.
_ADDED_COLUMNS = {"captures": {"sends": "INTEGER NOT NULL DEFAULT 0"}}


_CAPTURE_SELECT = (
    "SELECT request_id, part_id, captured_at, published_at, outcome, flagged_at, sends, "
    "decided_at FROM captures"
)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """A capture ready to be spooled: the request payload plus what the station remembers."""

    request_id: str
    part_id: str
    topic: str
    payload: bytes
    captured_at: float
    original_size: tuple[int, int]
    size: tuple[int, int]
    has_audio: bool = False
    source: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One request due to be published: never sent yet (`sends` 0), or re-sent."""

    seq: int
    request_id: str
    topic: str
    payload: bytes
    attempts: int
    sends: int = 0


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """What the station remembers about one capture."""

    request_id: str
    part_id: str
    captured_at: float
    published_at: float | None
    outcome: str | None
    flagged_at: float | None
    sends: int = 0
    decided_at: float | None = None

    @property
    def resends(self) -> int:
        """How often the request was published again for want of an answer."""
        return max(0, self.sends - 1)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Queue depth and disk use, for `inspector edge status` and the warnings.

    `depth` counts captures the broker has not acknowledged yet; `unanswered` every capture
    the spool still holds (sent or not, no verdict or rejection yet), and `bytes` is theirs.
    """

    depth: int
    bytes: int
    max_bytes: int
    oldest_captured_at: float | None
    awaiting_verdict: int
    last_error: str | None
    unanswered: int = 0
    resent: int = 0
    oldest_unanswered_at: float | None = None

    @property
    def fill(self) -> float:
        """Fraction of the disk budget in use."""
        return self.bytes / self.max_bytes if self.max_bytes else 0.0

    def oldest_age_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest unsent capture was taken."""
        if self.oldest_captured_at is None:
            return None
        return (time.time() if now is None else now) - self.oldest_captured_at

    def oldest_unanswered_age_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest capture still waiting for its answer was taken."""
        if self.oldest_unanswered_at is None:
            return None
        return (time.time() if now is None else now) - self.oldest_unanswered_at


class Spool:
    """Thread-safe handle on the spool file; one per process."""

    def __init__(self, path: Path, max_bytes: int = 512 * MiB, warn_fraction: float = 0.8) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.warn_fraction = warn_fraction
        self._lock = threading.Lock()
        # One connection shared by the agent's threads, serialised by the lock; autocommit
        # mode with explicit BEGIN IMMEDIATE so each transaction is exactly what we say.
        self._db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsynced, so a capture acknowledged to the operator survives
        # a power cut, not only a process kill.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA journal_size_limit=67108864")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()
        self._owner_fd: int | None = None

    def _add_missing_columns(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    def try_own(self) -> bool:
        """Become the one process publishing this spool; False when another agent is.

        An advisory lock on a side file: the kernel drops it when the process dies, even
        by kill -9, so a restarted agent always gets it back.
        """
        if self._owner_fd is not None:
            return True
        fd = os.open(f"{self.path}.owner", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._owner_fd = fd
        return True

    def owned_elsewhere(self) -> bool:
        """Whether another handle (a running agent) owns this spool right now."""
        if self._owner_fd is not None:
            return False
        if not Path(f"{self.path}.owner").exists():
            return False
        fd = os.open(f"{self.path}.owner", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing also drops the lock if we just took it
        return False

    def close(self) -> None:
        """Close the database connection and give up ownership."""
        with self._lock:
            self._db.close()
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None

    def _tx(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(sql, params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cur

    # --- writing -----------------------------------------------------------------------

    def add(self, entry: SpoolEntry) -> SpoolStats:
        """Commit a capture to the outbox (durably) or raise SpoolFull; returns the new usage."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                used = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
                if used + len(entry.payload) > self.max_bytes:
                    raise SpoolFull(
                        f"spool {self.path} is full ({used / MiB:.1f} of "
                        f"{self.max_bytes / MiB:.1f} MiB held by captures without an "
                        f"answer): the capture of part {entry.part_id} was refused. Check "
                        "the broker connection and the workers, or raise spool.max_bytes"
                    )
                self._db.execute(
                    "INSERT INTO outbox (request_id, topic, payload, size, captured_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        entry.request_id,
                        entry.topic,
                        entry.payload,
                        len(entry.payload),
                        entry.captured_at,
                    ),
                )
                self._db.execute(
                    "INSERT INTO captures (request_id, part_id, source, captured_at, "
                    "original_width, original_height, width, height, has_audio) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.request_id,
                        entry.part_id,
                        entry.source,
                        entry.captured_at,
                        *entry.original_size,
                        *entry.size,
                        int(entry.has_audio),
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._stats_locked()

    def mark_sent(self, request_id: str, resend_at: float, at: float | None = None) -> None:
        """The broker acknowledged a publish: keep the request, due again at `resend_at`."""
        now = time.time() if at is None else at
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # No row when the answer overtook the PUBACK: then there is nothing to re-send.
                self._db.execute(
                    "UPDATE outbox SET next_attempt_at = ?, last_error = NULL WHERE request_id = ?",
                    (resend_at, request_id),
                )
                self._db.execute(
                    "UPDATE captures SET published_at = ?, sends = sends + 1 WHERE request_id = ?",
                    (now, request_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def mark_failed(self, request_id: str, error: str, retry_at: float) -> None:
        """The broker refused the request: keep it and try again at `retry_at`."""
        self._tx(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
            "WHERE request_id = ?",
            (error, retry_at, request_id),
        )

    def record_outcome(
        self, request_id: str, outcome: str, at: float | None = None
    ) -> CaptureRecord | None:
        """Store a verdict or rejection and drop the request from the outbox.

        Returns the capture as it was before, if known; the first answer stays recorded,
        so a repeat (a re-sent request answered twice) shows up as `outcome` already set.
        """
        now = time.time() if at is None else at
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(_CAPTURE_SELECT + " WHERE request_id = ?", (request_id,))
                found = row.fetchone()
                self._db.execute("DELETE FROM outbox WHERE request_id = ?", (request_id,))
                if found is not None and found[4] is None:
                    self._db.execute(
                        "UPDATE captures SET outcome = ?, decided_at = ? WHERE request_id = ?",
                        (outcome, now, request_id),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return CaptureRecord(*found) if found else None

    def postpone_resends(self, before: float, until: float) -> None:
        """Re-sends due before `before` wait until `until` (sent requests only)."""
        self._tx(
            "UPDATE outbox SET next_attempt_at = ? WHERE next_attempt_at < ? AND request_id IN "
            "(SELECT request_id FROM captures WHERE sends > 0)",
            (until, before),
        )

    def flag(self, request_id: str, at: float | None = None) -> None:
        """Remember that the missing verdict of this capture was reported."""
        now = time.time() if at is None else at
        self._tx("UPDATE captures SET flagged_at = ? WHERE request_id = ?", (now, request_id))

    def prune(self, older_than: float) -> int:
        """Forget delivered captures taken before `older_than` (epoch seconds)."""
        cur = self._tx(
            "DELETE FROM captures WHERE captured_at < ? AND request_id NOT IN "
            "(SELECT request_id FROM outbox)",
            (older_than,),
        )
        return cur.rowcount

    # --- reading -----------------------------------------------------------------------

    def next_batch(
        self,
        limit: int,
        exclude: set[str],
        now: float | None = None,
        resend_sent_before: float | None = None,
    ) -> list[OutboxItem]:
        """Oldest due requests, skipping those already in flight.

        With `resend_sent_before`, requests the broker already acknowledged are due only if
        that last happened before it (the workers report a backlog: give them time).
        """
        when = time.time() if now is None else now
        cutoff = when if resend_sent_before is None else resend_sent_before
        with self._lock:
            rows = self._db.execute(
                "SELECT o.seq, o.request_id, o.topic, o.payload, o.attempts, "
                "COALESCE(c.sends, 0) FROM outbox o LEFT JOIN captures c USING (request_id) "
                "WHERE o.next_attempt_at <= ? "
                "AND (COALESCE(c.sends, 0) = 0 OR c.published_at <= ?) "
                "ORDER BY o.seq LIMIT ?",
                (when, cutoff, limit + len(exclude)),
            ).fetchall()
        items = [OutboxItem(r[0], r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]
        return [i for i in items if i.request_id not in exclude][:limit]

    def capture(self, request_id: str) -> CaptureRecord | None:
        """The remembered capture with this request_id."""
        with self._lock:
            row = self._db.execute(
                _CAPTURE_SELECT + " WHERE request_id = ?", (request_id,)
            ).fetchone()
        return CaptureRecord(*row) if row else None

    def history(self) -> list[CaptureRecord]:
        """Every remembered capture, oldest first."""
        with self._lock:
            rows = self._db.execute(_CAPTURE_SELECT + " ORDER BY captured_at").fetchall()
        return [CaptureRecord(*r) for r in rows]

    def has_source(self, source: str) -> bool:
        """Whether a capture was already taken from this source (a watched-folder file)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM captures WHERE source = ?", (source,)).fetchone()
        return row is not None

    def overdue(self, captured_before: float) -> list[CaptureRecord]:
        """Captures without a verdict, taken before the cutoff, not yet flagged."""
        with self._lock:
            rows = self._db.execute(
                _CAPTURE_SELECT + " WHERE outcome IS NULL AND flagged_at IS NULL "
                "AND captured_at < ? ORDER BY captured_at",
                (captured_before,),
            ).fetchall()
        return [CaptureRecord(*r) for r in rows]

    def stats(self) -> SpoolStats:
        """Current queue depth, size and oldest item."""
        with self._lock:
            return self._stats_locked()

    def _stats_locked(self) -> SpoolStats:
        held, size, oldest_held, depth, oldest, resent = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(o.size), 0), MIN(o.captured_at), "
            "COALESCE(SUM(COALESCE(c.sends, 0) = 0), 0), "
            "MIN(CASE WHEN COALESCE(c.sends, 0) = 0 THEN o.captured_at END), "
            "COALESCE(SUM(COALESCE(c.sends, 0) > 1), 0) "
            "FROM outbox o LEFT JOIN captures c USING (request_id)"
        ).fetchone()
        awaiting = self._db.execute(
            "SELECT COUNT(*) FROM captures WHERE outcome IS NULL"
        ).fetchone()[0]
        err = self._db.execute(
            "SELECT last_error FROM outbox WHERE last_error IS NOT NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        return SpoolStats(
            depth=depth,
            bytes=size,
            max_bytes=self.max_bytes,
            oldest_captured_at=oldest,
            awaiting_verdict=awaiting,
            last_error=err[0] if err else None,
            unanswered=held,
            resent=resent,
            oldest_unanswered_at=oldest_held,
        )

    def request_ids(self) -> list[str]:
        """Request ids still in the outbox (without an answer), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT request_id FROM outbox ORDER BY seq").fetchall()
        return [r[0] for r in rows]


def read_stats(path: Path, max_bytes: int) -> SpoolStats | None:
    """Stats of a spool file without creating it; None when there is none yet."""
    if not path.exists():
        return None
    spool = Spool(path, max_bytes)
    try:
        return spool.stats()
    finally:
        spool.close()


def agent_running(path: Path) -> bool:
    """Whether an agent currently owns the spool at `path`."""
    if not path.exists():
        return False
    spool = Spool(path)
    try:
        return spool.owned_elsewhere()
    finally:
        spool.close()
