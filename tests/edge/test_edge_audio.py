"""Voice notes with a scripted microphone at the sounddevice boundary, and from WAV files."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.audio import SILENT_DB, VoiceRecorder, level_db, load_wav, meter
from edge.config import AudioSettings
from inspector.errors import RejectedInput
from tests.fixtures.edge import ScriptedMicrophone, silence, tone, wav_bytes


def test_fixed_length_note_is_exactly_that_long_at_16_khz_mono() -> None:
    mic = ScriptedMicrophone(tone(3.0))
    levels: list[float] = []
    recorder = VoiceRecorder(AudioSettings(mode="fixed", fixed_s=2.0), mic, levels.append)
    note = recorder.record()
    assert note is not None
    assert len(note.samples) == 32000
    assert mic.opened_with["samplerate"] == 16000 and mic.opened_with["channels"] == 1
    assert mic.closed
    assert levels and max(levels) > -15  # a 0.3 amplitude sine is about -13 dBFS
    info = sf.info(io.BytesIO(note.wav()))
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 32000)


def test_vad_records_from_speech_until_the_silence_timeout() -> None:
    signal = np.concatenate([silence(1.0), tone(1.5), silence(3.0), tone(1.0)])
    mic = ScriptedMicrophone(signal)
    settings = AudioSettings(mode="vad", silence_timeout_s=0.8, vad_threshold_db=-40)
    note = VoiceRecorder(settings, mic).record()
    assert note is not None
    # 0.3 s pre-roll + 1.5 s speech + 0.2 s kept of the silence that ended it.
    assert 1.8 <= note.duration_s <= 2.2
    # It stopped after the timeout: the second burst of speech was never read.
    assert mic.position < round((1.0 + 1.5 + 3.0) * 16000)


def test_vad_gives_up_when_nobody_speaks() -> None:
    mic = ScriptedMicrophone(silence(20.0))
    settings = AudioSettings(mode="vad", start_timeout_s=2.0)
    assert VoiceRecorder(settings, mic).record() is None
    assert mic.position <= round(2.1 * 16000)


def test_push_to_talk_stops_when_asked_and_never_exceeds_the_maximum() -> None:
    stop = threading.Event()
    stop.set()  # the operator already released the key: one block is recorded
    note = VoiceRecorder(AudioSettings(mode="push_to_talk"), ScriptedMicrophone(tone(5))).record(
        stop
    )
    assert note is not None and 0 < note.duration_s <= 0.05 + 1e-9

    endless = ScriptedMicrophone(tone(100.0))
    capped = VoiceRecorder(AudioSettings(mode="push_to_talk", max_s=3.0, fixed_s=1.0), endless)
    note = capped.record(threading.Event())
    assert note is not None and note.duration_s == pytest.approx(3.0)


def test_a_device_without_16_khz_is_recorded_at_its_rate_and_resampled() -> None:
    mic = ScriptedMicrophone(tone(2.0, rate=48000), channels=2)
    recorder = VoiceRecorder(AudioSettings(mode="fixed", fixed_s=1.0, device_rate=48000), mic)
    note = recorder.record()
    assert mic.opened_with["samplerate"] == 48000
    assert note is not None and abs(len(note.samples) - 16000) <= 2


def test_level_meter_reads_silence_and_full_scale() -> None:
    assert level_db(np.zeros(800, dtype=np.float32)) == SILENT_DB
    assert level_db(np.ones(800, dtype=np.float32)) == pytest.approx(0.0)
    assert meter(0.0, width=10) == "█" * 10
    assert meter(-60.0, width=10) == "░" * 10


def test_wav_file_notes_are_converted_to_16_khz_mono(tmp_path: Path) -> None:
    path = tmp_path / "note.wav"
    path.write_bytes(wav_bytes(tone(1.0, rate=44100), 44100, channels=2))
    info = sf.info(io.BytesIO(load_wav(path, max_s=30)))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert abs(info.frames - 16000) <= 2


def test_wav_file_longer_than_the_maximum_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    path.write_bytes(wav_bytes(tone(3.0), 16000))
    with pytest.raises(RejectedInput, match=r"audio\.too_long"):
        load_wav(path, max_s=2.0)
