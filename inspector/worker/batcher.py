"""Dynamic batching: start at once when the engine is idle, group requests by photo shape."""

from __future__ import annotations

import threading
import time
from collections import deque

from inspector.worker.intake import Accepted


class Batcher:
    """A bounded FIFO of validated requests that hands out shape-grouped batches.

    The engine never waits for a batch to fill: when it asks and requests are queued it gets
    them at once, waiting (at most `max_wait_s`) only for messages already received and
    still being validated.
    """

    def __init__(self, max_batch: int, max_wait_s: float, capacity: int) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.capacity = capacity
        self._items: deque[Accepted] = deque()
        self._validating = 0
        self._cond = threading.Condition()

    def expect(self) -> None:
        """A message arrived and is being validated; it may join the next batch."""
        with self._cond:
            self._validating += 1

    def settle(self, item: Accepted | None, stop: threading.Event) -> bool:
        """Validation finished: queue the item (None when refused). False if stopped while full."""
        with self._cond:
            self._validating -= 1
            if item is None:
                self._cond.notify_all()
                return True
            while len(self._items) >= self.capacity:
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def depth(self) -> int:
        """Requests queued for inference."""
        with self._cond:
            return len(self._items)

    def next_batch(self, stop: threading.Event, poll_s: float = 0.2) -> list[Accepted]:
        """The next batch: the oldest request plus queued requests with the same shape bucket."""
        with self._cond:
            while not self._items:
                if stop.is_set():
                    return []
                self._cond.wait(poll_s)
            bucket = self._items[0].bucket
            deadline = time.monotonic() + self.max_wait_s
            while (
                self._validating > 0
                and self._count(bucket) < self.max_batch
                and (left := deadline - time.monotonic()) > 0
            ):
                self._cond.wait(left)
            batch: list[Accepted] = []
            kept: deque[Accepted] = deque()
            while self._items:
                item = self._items.popleft()
                if len(batch) < self.max_batch and item.bucket == bucket:
                    batch.append(item)
                else:
                    kept.append(item)
            self._items = kept
            self._cond.notify_all()
            return batch

    def drain(self) -> list[Accepted]:
        """Remove and return everything queued (on shutdown; those messages stay unacked)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def _count(self, bucket: tuple[tuple[int, int], ...]) -> int:
        return sum(1 for item in self._items if item.bucket == bucket)
