"""The station's terminal: keys to capture and record, a live status line with a level meter."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from inspector.errors import InspectorError
from inspector.safetext import terminal

from .agent import EdgeAgent
from .audio import SILENT_DB, meter
from .triggers import CaptureCommand, KeyReader

HELP = (
    "[bold]space[/] capture   [bold]r[/] voice note   [bold]v[/] latest verdict in full   "
    "[bold]q[/] quit"
)


class StationTerminal:
    """Reads keys and keeps a status line under the scrolling verdicts."""

    def __init__(self, agent: EdgeAgent, console: Console) -> None:
        self._agent = agent
        self._console = console
        self._level = SILENT_DB
        self._recording: threading.Thread | None = None
        self._stop_recording = threading.Event()
        if agent.recorder is not None:
            agent.recorder.on_level = self._set_level

    def _set_level(self, db: float) -> None:
        self._level = db

    def run(self, keys: KeyReader) -> None:
        """Handle keys until q (or the agent stops)."""
        self._console.print(HELP)
        with (
            keys,
            Live(
                self._status(), console=self._console, refresh_per_second=10, transient=True
            ) as live,
        ):
            while not self._agent.wait(0):
                key = keys.read(0.1)
                if key in ("q", "Q"):
                    break
                if key == " ":
                    self._capture()
                elif key in ("r", "R"):
                    self._toggle_note()
                elif key in ("v", "V") and not self._agent.board.show_latest():
                    self._console.print("[dim]no verdict yet[/]")
                live.update(self._status())
        self._stop_recording.set()

    def _capture(self) -> None:
        try:
            self._agent.capture(CaptureCommand())
        except InspectorError as exc:
            self._console.print(f"[bold red]capture failed:[/] {terminal(exc.message)}")

    def _toggle_note(self) -> None:
        if self._agent.recorder is None:
            self._console.print("[yellow]voice notes are off (audio.mode)[/]")
            return
        if self._recording is not None and self._recording.is_alive():
            self._stop_recording.set()
            return
        self._stop_recording = threading.Event()
        self._recording = threading.Thread(
            target=self._record, args=(self._stop_recording,), name="edge-recorder", daemon=True
        )
        self._recording.start()

    def _record(self, stop: threading.Event) -> None:
        started = time.monotonic()
        try:
            note = self._agent.record_note(stop)
        except InspectorError as exc:
            self._console.print(f"[bold red]recording failed:[/] {terminal(exc.message)}")
            return
        finally:
            self._level = SILENT_DB
        if note is None or note.duration_s == 0:
            self._console.print("[yellow]no speech heard; no voice note kept[/]")
        else:
            self._console.print(
                f"[green]voice note {note.duration_s:.1f} s[/] (peak "
                f"{note.peak_db:.0f} dBFS) will go with the next capture "
                f"[dim]({time.monotonic() - started:.1f} s)[/]"
            )

    def _status(self) -> Text:
        st = self._agent.stats()
        link = (
            "[green]broker connected[/]"
            if self._agent.transport.connected
            else "[red]broker unreachable[/]"
        )
        parts = [
            f"{self._agent.station.site}/{self._agent.station.line}/{self._agent.station.station}",
            link,
            f"unsent (spool) {st.depth}",
            f"awaiting verdict {st.awaiting_verdict}",
        ]
        if st.resent:
            parts.append(f"[yellow]re-sent {st.resent}[/]")
        if self._recording is not None and self._recording.is_alive():
            mode = self._agent.settings.audio.mode
            hint = "r to stop" if mode == "push_to_talk" else mode
            parts.append(f"[red]● REC[/] {meter(self._level)} ({hint})")
        elif self._agent.pending_note is not None:
            parts.append(f"note {self._agent.pending_note.duration_s:.1f} s ready")
        return Text.from_markup("  |  ".join(parts))
