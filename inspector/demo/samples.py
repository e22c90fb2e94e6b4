"""Generated inspection media for the demo: drawn brackets (some damaged) and a voice note."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import soundfile as sf
from numpy.typing import NDArray

PartKind = Literal["ok", "scratch", "dent"]
KINDS: tuple[PartKind, ...] = ("ok", "scratch", "dent")
WIDTH, HEIGHT = 640, 480
NOTE_RATE = 16000
# How far a part may sit from its place on the belt: a fixture holds it within a few pixels.
JITTER_PX = 2
TEXTURE_SEED = 20

Image = NDArray[np.uint8]


def kind_for(index: int) -> PartKind:
    """The defect drawn on the index-th demo part: good, scratched, dented, good, …"""
    return KINDS[index % len(KINDS)]


def draw_part(kind: PartKind, seed: int) -> Image:
    """A 640×480 photo of a machined L-bracket on a belt, with the given defect drawn on it."""
    rng = np.random.default_rng(seed)
    # One belt and one batch of stock: their texture is the same under every part, so what
    # changes from part to part is where it sits and the damage drawn on it.
    texture = np.random.default_rng(TEXTURE_SEED)
    belt = np.linspace(60, 95, HEIGHT, dtype=np.float32)[:, None, None]
    img = np.repeat(np.repeat(belt, WIDTH, axis=1), 3, axis=2)
    img += texture.normal(0, 4, img.shape).astype(np.float32)

    # The bracket: an L of brushed aluminium, placed with a little jitter like a real line.
    dx, dy = (int(v) for v in rng.integers(-JITTER_PX, JITTER_PX + 1, size=2))
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.rectangle(mask, (150 + dx, 110 + dy), (490 + dx, 210 + dy), 255, -1)
    cv2.rectangle(mask, (150 + dx, 110 + dy), (250 + dx, 390 + dy), 255, -1)
    brushed = 175 + texture.normal(0, 6, (1, WIDTH)).astype(np.float32)  # vertical grain
    metal = np.repeat(brushed, HEIGHT, axis=0)[:, :, None] * np.array([1.0, 1.0, 1.03], np.float32)
    inside = mask.astype(bool)
    img[inside] = metal[inside]
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.clip(img, 0, 255).astype(np.uint8)
    cv2.drawContours(out, contours, -1, (120, 120, 125), 2, cv2.LINE_AA)
    surface = mask.copy()
    for cx, cy in ((300, 160), (400, 160), (200, 280), (200, 350)):
        cv2.circle(out, (cx + dx, cy + dy), 14, (35, 35, 38), -1, cv2.LINE_AA)
        cv2.circle(out, (cx + dx, cy + dy), 14, (140, 140, 145), 1, cv2.LINE_AA)
        cv2.circle(surface, (cx + dx, cy + dy), 16, 0, -1)
    # Damage marks the metal only: never the belt, never across a drilled hole.
    on_metal = cv2.erode(surface, np.ones((5, 5), np.uint8)).astype(np.float32) / 255

    # Damage is drawn large and dark enough to be seen at a glance: the demo's model is
    # tiny and random, and it learns from a few dozen reviews what a person sees at once.
    if kind == "scratch":
        groove = np.zeros((HEIGHT, WIDTH), np.float32)
        glint = np.zeros((HEIGHT, WIDTH), np.float32)
        x0, y0 = 175 + dx + int(rng.integers(0, 11)), 125 + dy + int(rng.integers(0, 11))
        x1, y1 = x0 + 280 + int(rng.integers(0, 11)), y0 + 60 + int(rng.integers(0, 11))
        lx, ly = 170 + dx + int(rng.integers(0, 11)), 225 + dy + int(rng.integers(0, 11))
        for a, b in (((x0, y0), (x1, y1)), ((lx, ly), (lx + 60, ly + 150))):
            cv2.line(groove, a, b, 1.0, 12, cv2.LINE_AA)
            cv2.line(glint, (a[0] + 3, a[1] - 8), (b[0] + 3, b[1] - 8), 1.0, 3, cv2.LINE_AA)
        delta = (glint * 60 - groove * 150) * on_metal
        out = np.clip(out.astype(np.float32) + delta[:, :, None], 0, 255).astype(np.uint8)
    elif kind == "dent":
        hollow = np.zeros((HEIGHT, WIDTH), np.float32)
        for (cx, cy), axes in (((370, 160), (70, 42)), ((200, 220), (42, 50))):
            cx += dx + int(rng.integers(-6, 7))
            cy += dy + int(rng.integers(-4, 5))
            cv2.ellipse(hollow, (cx, cy), axes, 20, 0, 360, 1.0, -1, cv2.LINE_AA)
        shade = cv2.GaussianBlur(hollow, (0, 0), 6)
        # A dent reads as a dark hollow with a highlight on the lit side.
        lit = np.roll(shade, (-6, -6), axis=(0, 1))
        delta = ((lit - shade) * 120 - shade * 130) * on_metal
        out = np.clip(out.astype(np.float32) + delta[:, :, None], 0, 255).astype(np.uint8)
    return out


def write_photo(path: Path, image: Image, quality: int = 90) -> Path:
    """Write a JPEG so that a folder watcher never sees it half-written (rename into place)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"OpenCV could not encode {path.name}")
    # A leading dot keeps the watched folder from picking up the file until the rename.
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)
    return path


def voice_note_wav(seconds: float = 2.0, seed: int = 0) -> bytes:
    """A 16 kHz mono WAV that sounds like a short spoken phrase: voiced syllables and pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * NOTE_RATE), dtype=np.float32) / NOTE_RATE
    pitch = 125 + 15 * np.sin(2 * np.pi * 0.7 * t)  # a speaking voice drifts in pitch
    phase = 2 * np.pi * np.cumsum(pitch) / NOTE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.6
    breath = rng.normal(0, 0.01, t.shape)
    signal = (0.25 * voiced * syllables + breath).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, signal, NOTE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()
