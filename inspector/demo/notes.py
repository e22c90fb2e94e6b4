"""Spoken voice notes for the demo parts: espeak-ng when installed, else WAVs shipped here.

The shipped notes (`notes/{kind}.wav`) were spoken by espeak-ng from `PHRASES`; with
espeak-ng on the machine the same phrases are spoken afresh. Each kind of part has one
phrase, with no part number: like the drawn parts, the notes are the same every run, so
what the demo's loop learns does not depend on which machine speaks them. Either way the
note is a 16 kHz mono 16-bit WAV, what a station records.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from importlib.resources import files

import numpy as np
import soundfile as sf
import soxr

from .samples import NOTE_RATE, PartKind

PHRASES: dict[PartKind, str] = {
    "ok": "Looks clean, no marks on it.",
    "scratch": "There is a scratch across the top flange.",
    "dent": "I can feel a dent next to the second hole.",
}
ESPEAK_TIMEOUT_S = 20.0
# Every note is this long (padded with silence): one audio length keeps the demo's parts in
# one shape bucket, so the worker judges them in one batch, as a fixed-length recorder would.
NOTE_SECONDS = 5.0


def to_note_wav(data: bytes) -> bytes:
    """Any WAV as a NOTE_SECONDS long 16 kHz mono 16-bit WAV, what a station sends."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != NOTE_RATE:
        mono = soxr.resample(mono, rate, NOTE_RATE)
    length = round(NOTE_SECONDS * NOTE_RATE)
    mono = np.pad(mono[:length], (0, max(0, length - len(mono))))
    out = io.BytesIO()
    sf.write(out, np.clip(mono, -1, 1), NOTE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


def espeak_note(text: str) -> bytes | None:
    """`text` spoken by espeak-ng, or None when it is not installed or fails."""
    program = shutil.which("espeak-ng")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "--stdout", "-v", "en-us", "-s", "165", text],
            capture_output=True,
            timeout=ESPEAK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not done.stdout:
        return None
    return to_note_wav(done.stdout)


def shipped_note(kind: PartKind) -> bytes:
    """The packaged note for a part of this kind."""
    return to_note_wav((files("inspector.demo") / "notes" / f"{kind}.wav").read_bytes())


def spoken_note(kind: PartKind, use_tts: bool = True) -> tuple[bytes, str]:
    """The voice note for a part of this kind and where it came from ('espeak-ng', 'shipped')."""
    if use_tts and (wav := espeak_note(PHRASES[kind])) is not None:
        return wav, "espeak-ng"
    return shipped_note(kind), "shipped"
