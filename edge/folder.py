"""The watched folder: each new photo dropped in it becomes a capture, then moves to `done/`.

A file is taken once it has stopped changing (a scanner or an FTP upload may still be
writing it). The spool remembers each file's identity in the same transaction as the
capture, so a crash between spooling and moving never captures a file twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from inspector.errors import CameraError, RejectedInput, SpoolFull, TriggerFailed

from .capture import IMAGE_SUFFIXES
from .config import FolderSettings

log = logging.getLogger(__name__)

# take(path, source_key) spools the file as a capture; returns once it is committed.
Take = Callable[[Path, str], object]
AlreadyTaken = Callable[[str], bool]


def source_key(path: Path) -> str:
    """A file's identity: name, size and modification time."""
    st = path.stat()
    return f"folder:{path.name}|{st.st_size}|{st.st_mtime_ns}"


class FolderWatcher:
    """Polls one folder and turns settled photo files into captures."""

    def __init__(
        self,
        settings: FolderSettings,
        take: Take,
        already_taken: AlreadyTaken,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        if settings.path is None:
            raise TriggerFailed("folder.path is not set")
        self.root = settings.path
        self._settings = settings
        self._take = take
        self._already_taken = already_taken
        self._warn = on_warning or (lambda text: log.warning("%s", text))
        self._seen: dict[Path, tuple[int, int]] = {}
        self._full = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = self.root / settings.done_dir
        self.failed = self.root / settings.failed_dir
        for folder in (self.root, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        """Start polling in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edge-folder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except Exception:
                log.exception("scanning %s failed", self.root)
            self._stop.wait(self._settings.poll_s)

    def scan(self, now: float | None = None) -> int:
        """Take every settled photo once; returns how many were captured."""
        when = time.time() if now is None else now
        taken = 0
        current: dict[Path, tuple[int, int]] = {}
        for path in sorted(self.root.iterdir()):
            if (
                not path.is_file()
                or path.name.startswith(".")
                or path.suffix.lower() not in IMAGE_SUFFIXES
            ):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            current[path] = sig
            settled = self._seen.get(path) == sig or self._settings.settle_s == 0
            if not settled or when - st.st_mtime < self._settings.settle_s:
                continue
            try:
                if self._ingest(path):
                    taken += 1
                self._full = False
            except SpoolFull as exc:
                # The folder itself is the backlog: leave files in place until there is room.
                if not self._full:
                    self._warn(f"{exc.message}; photos wait in {self.root} meanwhile")
                self._full = True
                break
        self._seen = current
        return taken

    def _ingest(self, path: Path) -> bool:
        key = source_key(path)
        if self._already_taken(key):
            self._move(path, self.done)
            return False
        try:
            self._take(path, key)
        except (RejectedInput, CameraError) as exc:
            self._warn(
                f"{path.name} is not a usable photo, moved to {self.failed.name}/: {exc.message}"
            )
            self._move(path, self.failed)
            return False
        self._move(path, self.done)
        return True

    @staticmethod
    def _move(path: Path, folder: Path) -> None:
        target = folder / path.name
        if target.exists():
            stem, n = path.stem, 1
            while target.exists():
                target = folder / f"{stem}.{n}{path.suffix}"
                n += 1
        path.replace(target)
