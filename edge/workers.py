"""What the station knows about the workers, from their retained status: whether to hold re-sends.

The agent re-sends a capture without an answer, but not while a live worker serving its
site reports a backlog (requests queued for it at the broker): the request is waiting, not
lost, and a copy would only queue behind the original. Workers that are away hold nothing
back: their sessions expire soon (`worker.session_expiry_s`), and an old retained status
of a retired worker must not silence a station. When nothing is known about the site's
workers (no status seen, or the ACL hides it) re-sends go out as usual.

A status counts as live only while fresh (three heartbeats): a worker killed together with
the broker never gets its last will published, and its last word must not count for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from pydantic import ValidationError

from inspector.mqtt import Message
from inspector.protocol import WorkerStatus, parse_status

log = logging.getLogger(__name__)

# Statuses from workers that predate heartbeats: assume they were re-published this often.
_UNKNOWN_HEARTBEAT_S = 30.0


@dataclass(frozen=True, slots=True)
class _Seen:
    status: WorkerStatus
    fresh_until: float


class WorkerWatch:
    """Follows the workers' status topics for one site; `hold_resends()` is the verdict."""

    def __init__(self, site: str) -> None:
        self.site = site
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def handle(self, message: Message, now: float | None = None) -> None:
        """Take in one status message (runs on the MQTT thread)."""
        try:
            status = parse_status(message.payload)
        except (ValidationError, UnicodeDecodeError):
            log.debug("unreadable worker status on %s ignored", message.topic)
            return
        if status.sites and self.site not in status.sites:
            return
        when = time.time() if now is None else now
        # A retained copy may be old: its own timestamp says how old; a live one is new now.
        sent = min(when, status.updated_at.timestamp()) if message.retain else when
        life = 3 * (status.heartbeat_s or _UNKNOWN_HEARTBEAT_S)
        with self._lock:
            self._seen[status.worker_id] = _Seen(status, sent + life)

    def live(self, now: float | None = None) -> list[WorkerStatus]:
        """Statuses of the workers serving this site that are online right now."""
        when = time.time() if now is None else now
        with self._lock:
            seen = list(self._seen.values())
        return [s.status for s in seen if s.fresh_until > when and s.status.state == "online"]

    def hold_resends(self, now: float | None = None) -> bool:
        """Whether requests the broker has are waiting rather than lost, by the workers' word."""
        return any(s.backlog for s in self.live(now))
