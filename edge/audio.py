"""Operator voice notes: push-to-talk, fixed length, voice-activity detection, or a WAV file.

The microphone is reached through `InputStreamFactory`, shaped like `sounddevice.InputStream`
in blocking mode; tests hand in a stream that plays a prepared signal. Lengths are counted
in samples, not wall time, so a recording behaves the same however fast the stream delivers.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import soxr
from numpy.typing import NDArray

from inspector.errors import AudioError as AudioError
from inspector.media import SAMPLE_RATE, decode_audio, encode_wav
from inspector.settings import LimitSettings

from .config import AudioSettings

BLOCK_S = 0.05
SILENT_DB = -120.0


class InputStream(Protocol):
    """The part of `sounddevice.InputStream` the recorder uses (blocking reads)."""

    def __enter__(self) -> InputStream: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def read(self, frames: int) -> tuple[NDArray[np.float32], bool]:
        """Block until `frames` frames are read; returns (frames × channels, overflowed)."""
        ...


InputStreamFactory = Callable[..., InputStream]


def open_sounddevice(**kwargs: Any) -> InputStream:
    """A real PortAudio input stream (imported lazily: the edge runs without a microphone)."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioError(f"no audio system for voice notes: {exc}") from None
    try:
        stream: InputStream = sounddevice.InputStream(**kwargs)
    except sounddevice.PortAudioError as exc:
        raise AudioError(f"cannot open the microphone: {exc}") from None
    return stream


@dataclass(frozen=True, slots=True)
class VoiceNote:
    """A recorded note: float32 mono samples at 16 kHz."""

    samples: NDArray[np.float32]
    peak_db: float

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE

    def wav(self) -> bytes:
        """16-bit PCM WAV bytes, as sent to the worker."""
        return encode_wav(self.samples, SAMPLE_RATE)


def level_db(block: NDArray[np.float32]) -> float:
    """RMS level of a block in dBFS (-120 for digital silence)."""
    if block.size == 0:
        return SILENT_DB
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
    return max(SILENT_DB, 20.0 * math.log10(rms)) if rms > 0 else SILENT_DB


def meter(db: float, width: int = 30, floor_db: float = -60.0) -> str:
    """A text level bar for the terminal."""
    filled = round(width * min(1.0, max(0.0, (db - floor_db) / -floor_db)))
    return "█" * filled + "░" * (width - filled)


def load_wav(path: Path, max_s: float) -> bytes:
    """A voice note file converted to 16 kHz mono 16-bit WAV, refused when over `max_s`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AudioError(f"cannot read voice note {path}: {exc.strerror}") from None
    decoded = decode_audio(data, None, LimitSettings(max_audio_seconds=max_s))
    return encode_wav(decoded.samples, SAMPLE_RATE)


LevelListener = Callable[[float], None]


class VoiceRecorder:
    """Records notes from one input device according to the audio settings."""

    def __init__(
        self,
        settings: AudioSettings,
        open_stream: InputStreamFactory = open_sounddevice,
        on_level: LevelListener | None = None,
    ) -> None:
        self.settings = settings
        self._open_stream = open_stream
        self.on_level = on_level
        self._rate = settings.device_rate or SAMPLE_RATE

    def record(self, stop: threading.Event | None = None) -> VoiceNote | None:
        """Record one note the configured way; push-to-talk ends when `stop` is set."""
        mode = self.settings.mode
        if mode == "fixed":
            return self.record_fixed(self.settings.fixed_s)
        if mode == "vad":
            return self.record_vad()
        if mode == "push_to_talk":
            return self.record_until(stop or threading.Event())
        return None

    def record_fixed(self, seconds: float) -> VoiceNote:
        """Record exactly `seconds` (capped at the maximum length)."""
        target = self._frames(min(seconds, self.settings.max_s))
        return self._run(lambda total, _db: total >= target)

    def record_until(self, stop: threading.Event) -> VoiceNote:
        """Record until `stop` is set (the key is pressed again) or the maximum length."""
        return self._run(lambda _total, _db: stop.is_set())

    def record_vad(self) -> VoiceNote | None:
        """Wait for speech, record until a silence timeout; None when nobody spoke."""
        s = self.settings
        silence_limit = self._frames(s.silence_timeout_s)
        start_limit = self._frames(s.start_timeout_s)
        state = {"spoke": False, "quiet": 0, "waited": 0}

        def done(total: int, db: float) -> bool:
            block = self._frames(BLOCK_S)
            if db >= s.vad_threshold_db:
                state["spoke"], state["quiet"] = True, 0
                return False
            if not state["spoke"]:
                state["waited"] += block
                return state["waited"] >= start_limit
            state["quiet"] += block
            return state["quiet"] >= silence_limit

        note = self._run(done, keep_lead=self._frames(0.3))
        if not state["spoke"]:
            return None
        # Drop the trailing silence that ended the note, keeping a short tail.
        tail = max(0, state["quiet"] - self._frames(0.2))
        if tail:
            cut = round(tail * SAMPLE_RATE / self._rate)
            return VoiceNote(note.samples[: max(1, len(note.samples) - cut)], note.peak_db)
        return note

    def _frames(self, seconds: float) -> int:
        return max(1, round(seconds * self._rate))

    def _run(self, done: Callable[[int, float], bool], keep_lead: int | None = None) -> VoiceNote:
        """Read blocks until `done(frames so far, block level)` or the maximum length.

        With `keep_lead`, blocks before the first speech are kept only for that many frames
        (a pre-roll), so a VAD note does not start with seconds of room noise.
        """
        block = self._frames(BLOCK_S)
        limit = self._frames(self.settings.max_s)
        chunks: list[NDArray[np.float32]] = []
        total, lead, peak = 0, 0, SILENT_DB
        threshold = self.settings.vad_threshold_db
        speaking = keep_lead is None
        with self._open_stream(
            samplerate=self._rate,
            channels=1,
            dtype="float32",
            blocksize=block,
            device=self.settings.device,
        ) as stream:
            while total < limit:
                data, _overflowed = stream.read(min(block, limit - total))
                mono = np.asarray(data, dtype=np.float32).reshape(len(data), -1).mean(axis=1)
                db = level_db(mono)
                peak = max(peak, db)
                if self.on_level is not None:
                    self.on_level(db)
                if not speaking and keep_lead is not None:
                    if db >= threshold:
                        speaking, total = True, lead
                    else:
                        chunks.append(mono)
                        lead += len(mono)
                        while lead - len(chunks[0]) >= keep_lead:
                            lead -= len(chunks.pop(0))
                if speaking:
                    chunks.append(mono)
                    total += len(mono)
                if done(total if speaking else 0, db):
                    break
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        if self._rate != SAMPLE_RATE and samples.size:
            samples = soxr.resample(samples, self._rate, SAMPLE_RATE).astype(np.float32)
        return VoiceNote(np.ascontiguousarray(samples, dtype=np.float32), peak)
