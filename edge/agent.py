"""The line agent: takes captures from any trigger, spools them, publishes, shows verdicts.

`EdgeAgent` wires the parts together; the boundaries (broker transport, camera, microphone)
are passed in, so tests run it against the real broker with files and a scripted microphone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from inspector.errors import AudioError, CameraError, Code, InspectorError, RejectedInput, SpoolBusy
from inspector.mqtt import ConnectionEvent, Message, MqttTransport
from inspector.protocol import (
    AudioPart,
    ImagePart,
    InspectionRequest,
    TopicKind,
    utcnow,
    worker_status_filter,
)

from .audio import VoiceNote, VoiceRecorder, load_wav
from .capture import CameraSource, CapturedImage, ImageSource, read_image_file
from .config import EdgeSettings
from .display import VerdictBoard
from .folder import FolderWatcher
from .publisher import Publisher
from .spool import Spool, SpoolEntry, SpoolStats
from .triggers import CaptureCommand, CaptureReceipt, HttpTrigger, parse_command
from .workers import WorkerWatch

log = logging.getLogger(__name__)

_HISTORY_CHECK_S = 3600.0


class EdgeAgent:
    """One station's agent. Thread-safe `capture`; `start`/`stop` run the background parts."""

    def __init__(
        self,
        settings: EdgeSettings,
        console: Console | None = None,
        *,
        transport: MqttTransport | None = None,
        camera: ImageSource | None = None,
        recorder: VoiceRecorder | None = None,
        panels: bool = False,
    ) -> None:
        self.settings = settings
        self.console = console or Console()
        self.station = settings.station.key
        # Devices and files first: a bad camera path or voice note fails before anything opens.
        if camera is None and settings.camera.source is not None:
            camera = CameraSource(settings.camera, settings.image)
        self.camera = camera
        self.recorder = recorder
        if recorder is None and settings.audio.mode not in ("off", "file"):
            self.recorder = VoiceRecorder(settings.audio)
        self._file_note = (
            load_wav(settings.audio.file, settings.audio.max_s)
            if settings.audio.mode == "file" and settings.audio.file is not None
            else None
        )
        self.transport = transport or MqttTransport(
            settings.broker,
            settings.station.mqtt_client_id,
            # paho counts reconnect delays in whole seconds.
            reconnect_min_s=max(1, round(settings.spool.retry_min_s)),
            reconnect_max_s=max(1, round(settings.spool.retry_max_s)),
        )
        self.spool = Spool(
            settings.spool.path, settings.spool.max_bytes, settings.spool.warn_fraction
        )
        self.publisher = Publisher(
            self.spool,
            self.transport,
            settings.spool,
            self.warn,
            verdict_timeout_s=settings.display.verdict_timeout_s,
            hold_resends=self._hold_resends,
            on_resend=self._on_resend,
        )
        self.workers = WorkerWatch(settings.station.site)
        self.board = VerdictBoard(self.console, self.spool, settings.display, panels=panels)
        self._spool_explained = False
        self._pending_note: VoiceNote | None = None
        self._capture_lock = threading.Lock()
        self._note_lock = threading.Lock()
        self._seq = 0
        self._warned_full = False
        self._stop = threading.Event()
        self._commands: queue.Queue[CaptureCommand] = queue.Queue(maxsize=100)
        self._threads: list[threading.Thread] = []
        self._link: tuple[bool, str] | None = None
        self.http: HttpTrigger | None = None
        self.folder: FolderWatcher | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect, subscribe, and start publishing, triggers and the verdict watchdog."""
        if not self.spool.try_own():
            raise SpoolBusy(
                f"another edge agent is already running on spool {self.spool.path}; "
                "stop it first (or give this station its own spool.path)"
            )
        t = self.settings.triggers
        self.transport.subscribe(self.station.topic(TopicKind.VERDICT), self._on_verdict)
        self.transport.subscribe(self.station.topic(TopicKind.RATIONALE), self._on_rationale)
        self.transport.subscribe(self.station.topic(TopicKind.REJECTED), self._on_rejection)
        self.transport.subscribe(worker_status_filter(), self.workers.handle)
        if t.mqtt:
            self.transport.subscribe(self.station.topic(TopicKind.TRIGGER), self._on_trigger)
        self.transport.on_connection(self._on_link)
        if t.http_port is not None:
            self.http = HttpTrigger(t.http_host, t.http_port, self.capture, self.status_dict)
            self.http.start()
        if self.settings.folder.path is not None:
            self.folder = FolderWatcher(
                self.settings.folder, self.capture_file, self.spool.has_source, self.warn
            )
            self.folder.start()
        self.transport.start()
        self.publisher.start()
        for target, name in (
            (self._watchdog, "edge-watchdog"),
            (self._serve_triggers, "edge-mqtt-trigger"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._report_backlog()

    def stop(self) -> None:
        """Stop everything; whatever is unsent stays in the spool for the next start."""
        self._stop.set()
        if self.folder is not None:
            self.folder.stop()
        if self.http is not None:
            self.http.stop()
        self.publisher.stop()
        self.transport.stop()
        for thread in self._threads:
            thread.join(5.0)
        if self.camera is not None:
            self.camera.close()
        self.spool.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() is called (or `timeout`); True once stopped."""
        return self._stop.wait(timeout)

    def __enter__(self) -> EdgeAgent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- captures ------------------------------------------------------------------------

    def capture(self, cmd: CaptureCommand) -> CaptureReceipt:
        """Take a photo from the camera (with any pending voice note) and spool it."""
        if self.camera is None:
            raise CameraError(
                "no camera is configured (camera.source); use the watched folder "
                "or `inspector edge send` for photo files"
            )
        with self._capture_lock:
            image = self.camera.capture()
            return self._spool_capture(cmd, image, None)

    def capture_file(
        self,
        path: Path,
        source: str | None = None,
        cmd: CaptureCommand | None = None,
        audio_wav: bytes | None = None,
    ) -> CaptureReceipt:
        """Spool a photo file (watched folder, one-shot send); the part id defaults to its stem."""
        image = read_image_file(path, self.settings.image)
        if cmd is None or cmd.part_id is None:
            fields = cmd.model_dump(exclude_none=True) if cmd else {}
            cmd = CaptureCommand(**{**fields, "part_id": path.stem[:128]})
        with self._capture_lock:
            return self._spool_capture(cmd, image, source, audio_wav)

    def _spool_capture(
        self,
        cmd: CaptureCommand,
        image: CapturedImage,
        source: str | None,
        audio_wav: bytes | None = None,
    ) -> CaptureReceipt:
        s = self.settings
        request_id = str(uuid.uuid4())
        self._seq += 1
        part_id = cmd.part_id or self._default_part_id()
        pending = self._pending_note
        wav = audio_wav if audio_wav is not None else self._note_wav(pending)
        try:
            request = InspectionRequest(
                request_id=uuid.UUID(request_id),
                site=self.station.site,
                line=self.station.line,
                station=self.station.station,
                part_id=part_id,
                captured_at=utcnow(),
                images=[ImagePart.from_bytes(image.content_type, image.data)],
                audio=AudioPart.from_bytes("audio/wav", wav) if wav else None,
                operator=cmd.operator or s.station.operator,
                note=cmd.note,
                adapter=s.station.adapter,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise RejectedInput(Code.PAYLOAD_INVALID, f"{where}: {err['msg']}") from None
        stats = self.spool.add(
            SpoolEntry(
                request_id=request_id,
                part_id=part_id,
                topic=self.station.topic(TopicKind.REQUEST),
                payload=request.to_payload(),
                captured_at=request.captured_at.timestamp(),
                original_size=image.original_size,
                size=image.size,
                has_audio=wav is not None,
                source=source,
            )
        )
        if audio_wav is None and pending is not None:
            # Only a capture that made it into the spool uses up the note.
            with self._note_lock:
                if self._pending_note is pending:
                    self._pending_note = None
        self.publisher.wake()
        self._check_budget(stats)
        w, h = image.size
        ow, oh = image.original_size
        scaled = f" (from {ow}×{oh})" if (w, h) != (ow, oh) else ""
        note = " + voice note" if wav else ""
        self.console.print(
            f"[cyan]captured[/] part [bold]{escape(part_id)}[/] {w}×{h}{scaled}"
            f"{note} → spool: {stats.depth} unsent [dim]({request_id})[/]"
        )
        if not self._spool_explained:
            self._spool_explained = True
            self.console.print(
                f"[dim]the spool ({escape(str(s.spool.path))}) keeps each capture on disk "
                "until the broker has it and its verdict is back; 'unsent' counts captures "
                "the broker has not acknowledged yet[/]"
            )
        return CaptureReceipt(request_id=request_id, part_id=part_id, spool_depth=stats.depth)

    def _default_part_id(self) -> str:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        return self.settings.triggers.default_part_id.format(
            station=self.station.station, seq=self._seq, time=stamp
        )[:128]

    # --- voice notes ---------------------------------------------------------------------

    def set_note(self, note: VoiceNote | None) -> None:
        """Attach a recorded note to the next capture (None discards it)."""
        with self._note_lock:
            self._pending_note = note

    @property
    def pending_note(self) -> VoiceNote | None:
        """The note waiting for the next capture."""
        return self._pending_note

    def record_note(self, stop: threading.Event | None = None) -> VoiceNote | None:
        """Record a note the configured way and keep it for the next capture."""
        if self.recorder is None:
            raise AudioError("voice notes are off (audio.mode)")
        note = self.recorder.record(stop)
        if note is not None and note.duration_s > 0:
            self.set_note(note)
        return note

    def _note_wav(self, note: VoiceNote | None) -> bytes | None:
        return note.wav() if note is not None else self._file_note

    # --- background ----------------------------------------------------------------------

    def _on_link(self, event: ConnectionEvent) -> None:
        # Tell the operator once per change, not on every reconnect attempt.
        state = (event.connected, event.reason)
        if state == self._link or self._stop.is_set():
            return
        was_down = self._link is not None and not self._link[0]
        self._link = state
        b = self.settings.broker
        if event.connected:
            self.publisher.wake()
            if was_down:
                self.console.print(f"[green]broker {b.host}:{b.port} connected again[/]")
        else:
            self.warn(
                f"broker {b.host}:{b.port}: {event.reason}; captures stay in the spool "
                "and are sent when it answers"
            )

    def _hold_resends(self) -> bool:
        return self.workers.hold_resends()

    def _on_resend(self, request_id: str, sends: int) -> None:
        rec = self.spool.capture(request_id)
        part = escape(rec.part_id) if rec is not None else "?"
        self.console.print(
            f"[yellow]re-sent ({sends})[/] part [bold]{part}[/]: no answer yet "
            f"[dim]({request_id[:8]})[/]"
        )

    def _on_verdict(self, message: Message) -> None:
        self.board.handle_verdict(message.payload)

    def _on_rationale(self, message: Message) -> None:
        self.board.handle_rationale(message.payload)

    def _on_rejection(self, message: Message) -> None:
        self.board.handle_rejection(message.payload)

    def _on_trigger(self, message: Message) -> None:
        # Runs on the MQTT thread: parse here, capture on our own thread.
        try:
            cmd = parse_command(message.payload)
        except (ValidationError, UnicodeDecodeError) as exc:
            self.warn(f"trigger message ignored: {exc}")
            return
        try:
            self._commands.put_nowait(cmd)
        except queue.Full:
            self.warn("too many trigger messages queued; one was dropped")

    def _serve_triggers(self) -> None:
        while not self._stop.is_set():
            try:
                cmd = self._commands.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.capture(cmd)
            except InspectorError as exc:
                self.warn(f"MQTT-triggered capture failed: {exc.message}")
            except Exception as exc:
                # Keep serving triggers whatever one capture ran into.
                log.exception("MQTT-triggered capture failed")
                self.warn(f"MQTT-triggered capture failed: {exc!r}")

    def _watchdog(self) -> None:
        tick = min(1.0, self.settings.display.verdict_timeout_s / 4)
        pruned_at = 0.0
        while not self._stop.wait(tick):
            try:
                self.board.check_overdue()
                now = time.time()
                if now - pruned_at > _HISTORY_CHECK_S:
                    self.spool.prune(now - self.settings.spool.keep_history_days * 86400)
                    pruned_at = now
            except Exception:
                log.exception("verdict watchdog failed")

    # --- status --------------------------------------------------------------------------

    def stats(self) -> SpoolStats:
        """Spool depth, size and oldest item."""
        return self.spool.stats()

    def status_dict(self) -> dict[str, Any]:
        """Status as JSON-able data (GET /status)."""
        st = self.spool.stats()
        return {
            "station": f"{self.station.site}/{self.station.line}/{self.station.station}",
            "connected": self.transport.connected,
            "queue_depth": st.depth,
            "queue_bytes": st.bytes,
            "max_bytes": st.max_bytes,
            "oldest_age_s": st.oldest_age_s(),
            "awaiting_verdict": st.awaiting_verdict,
            "unanswered": st.unanswered,
            "resent": st.resent,
            "oldest_unanswered_age_s": st.oldest_unanswered_age_s(),
            "in_flight": self.publisher.in_flight,
            "resends_held": self.workers.hold_resends(),
            "last_error": st.last_error,
        }

    def warn(self, text: str) -> None:
        """Tell the operator (and the log) about a problem."""
        log.warning("%s", text)
        self.console.print(f"[bold yellow]warning:[/] {escape(text)}")

    def _check_budget(self, stats: SpoolStats) -> None:
        full = stats.fill >= self.settings.spool.warn_fraction
        if full and not self._warned_full:
            self.warn(
                f"spool is {stats.fill:.0%} full ({stats.unanswered} captures without an "
                f"answer, {stats.depth} of them unsent, {stats.bytes / 2**20:.1f} of "
                f"{stats.max_bytes / 2**20:.0f} MiB): check the broker connection and the "
                "workers; new captures are refused when it is full"
            )
        self._warned_full = full

    def _report_backlog(self) -> None:
        st = self.spool.stats()
        if st.depth:
            age = st.oldest_age_s() or 0.0
            self.console.print(
                f"[yellow]{st.depth} unsent capture(s) in the spool[/], oldest "
                f"{age:.0f} s old; sending them once the broker answers"
            )
        waiting = st.unanswered - st.depth
        if waiting > 0:
            self.console.print(
                f"[yellow]{waiting} sent capture(s) still without an answer[/]; "
                "re-sending them when their time comes"
            )
