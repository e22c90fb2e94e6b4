"""Every received request is answered exactly once, and none waits forever.

The worker tracks each message from receipt until it is acked. Whoever answers a message
first claims it: the pipeline when it has an outcome (a verdict, a refusal), or this
watchdog when the message is stuck (a decoder or the model hangs). A claim is taken once,
so a message is never answered twice: a late verdict for a message the watchdog rejected
is dropped, and the watchdog never touches a message the pipeline already holds an outcome
for (the commit loop's own retries cover that part).

A message is stuck when, for longer than `worker.settle_timeout_s`, either
- a stage (validation, or inference of its batch) has been working on it, or
- it has waited for a stage that finished nothing meanwhile.
A long but moving backlog is not stuck: each finished validation or batch restarts the
bound for the messages waiting behind it.

While the store is unreachable nothing can be answered, and the design holds requests
unacked until it is back: the bound starts again from the store's last failure, so an
outage costs time, never an inspection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from inspector.errors import SettleTimeout
from inspector.mqtt import Message
from inspector.protocol import StationKey
from inspector.worker.intake import Refused, rejection_log

log = logging.getLogger(__name__)


VALIDATION, INFERENCE = "validation", "inference"


@dataclass(slots=True)
class _Entry:
    message: Message
    station: StationKey | None
    received: float
    stage: str = VALIDATION
    stage_since: float = 0.0  # when it began waiting for its stage
    busy_since: float | None = None  # when its stage began working on it
    request_id: UUID | None = None
    claimed: bool = False  # the pipeline has an outcome and answers it
    expired: bool = False  # the watchdog rejected it
    answered: bool = False  # committed and acked
    returned: bool = False  # after expiry, the pipeline came back with it (and dropped it)

    @property
    def done(self) -> bool:
        return self.answered and (not self.expired or self.returned)


class Watchdog:
    """Received messages until answered; rejects those left unanswered for `timeout_s`.

    `expire` is handed the refusals the watchdog claimed; it must not block for long (the
    worker queues them for its commit loop).
    """

    def __init__(
        self,
        timeout_s: float,
        expire: Callable[[list[Refused]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self._expire = expire
        self._clock = clock
        # Keyed by the Message object's identity: packet ids are reused once a message is
        # acked, and two deliveries of one request are two messages.
        self._entries: dict[int, _Entry] = {}
        self._held_since = float("-inf")
        # When each stage last finished work on a message.
        self._progress = {VALIDATION: float("-inf"), INFERENCE: float("-inf")}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.expired_total = 0

    def start(self) -> None:
        """Start sweeping in a thread of its own."""
        self._thread = threading.Thread(target=self._run, name="worker-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sweeping; what is still waiting stays unacked, for redelivery."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def track(self, message: Message, received: float, station: StationKey | None) -> None:
        """A message arrived: it waits for validation."""
        with self._lock:
            self._entries[id(message)] = _Entry(message, station, received, stage_since=received)

    def started(self, messages: list[Message]) -> None:
        """A stage (a validation thread, the engine) began working on these messages."""
        now = self._clock()
        with self._lock:
            for message in messages:
                entry = self._entries.get(id(message))
                if entry is not None and entry.message is message:
                    entry.busy_since = now

    def validated(self, message: Message, request_id: UUID) -> None:
        """Validation accepted the message: it now waits for inference."""
        now = self._clock()
        with self._lock:
            self._progress[VALIDATION] = now
            entry = self._entries.get(id(message))
            if entry is not None and entry.message is message:
                entry.request_id = request_id
                entry.stage, entry.stage_since, entry.busy_since = INFERENCE, now, None

    def claim(self, message: Message) -> bool:
        """Take the right to answer `message`; False when the watchdog already rejected it."""
        with self._lock:
            entry = self._entries.get(id(message))
            if entry is None or entry.message is not message:
                return True  # not tracked (e.g. the pipeline driven directly)
            self._progress[entry.stage] = self._clock()
            if entry.expired:
                self._returned(entry)
                return False
            entry.claimed = True
            return True

    def abandon_if_expired(self, message: Message) -> bool:
        """True when the watchdog already rejected `message`: the pipeline drops its work."""
        with self._lock:
            entry = self._entries.get(id(message))
            if entry is None or entry.message is not message or not entry.expired:
                return False
            self._returned(entry)
            return True

    def settled(self, message: Message) -> None:
        """The message's answer is committed and it is acked."""
        with self._lock:
            entry = self._entries.get(id(message))
            if entry is not None and entry.message is message:
                entry.answered = True
                # A rejected message stays known until the pipeline gives up its work on it,
                # so a late outcome is dropped instead of answered a second time.
                if entry.done:
                    del self._entries[id(message)]

    def _returned(self, entry: _Entry) -> None:
        entry.returned = True
        if entry.done:
            del self._entries[id(entry.message)]

    def hold(self) -> None:
        """The store is unreachable: nothing expires until a full bound after this call."""
        with self._lock:
            self._held_since = self._clock()

    def waiting(self) -> int:
        """Messages received and not yet answered."""
        with self._lock:
            return sum(1 for entry in self._entries.values() if not entry.answered)

    def sweep(self) -> list[Refused]:
        """Claim every message waiting longer than the bound and hand its rejection on."""
        now = self._clock()
        due: list[Refused] = []
        with self._lock:
            for entry in self._entries.values():
                if not (entry.claimed or entry.expired) and self._stuck(entry, now):
                    entry.expired = True
                    due.append(
                        Refused(
                            entry.message,
                            SettleTimeout(self.timeout_s),
                            entry.request_id,
                            entry.station,
                            entry.received,
                        )
                    )
            self.expired_total += len(due)
        for refused in due:
            rejection_log.note(refused)
        if due:
            log.error(
                "%d request(s) not answered within %g s; rejecting them with internal.timeout",
                len(due),
                self.timeout_s,
            )
            self._expire(due)
        return due

    def _stuck(self, entry: _Entry, now: float) -> bool:
        if entry.busy_since is not None:
            since = entry.busy_since
        else:
            since = max(entry.stage_since, self._progress[entry.stage])
        return now - max(since, self._held_since) > self.timeout_s

    def _run(self) -> None:
        # A timer, not synchronisation: each sweep is cheap and the bound is coarse.
        interval = min(1.0, max(0.05, self.timeout_s / 4))
        while not self._stop.wait(interval):
            try:
                self.sweep()
            except Exception:
                log.exception("watchdog sweep failed")
