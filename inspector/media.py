"""Decode and validate photos (OpenCV) and voice notes (soundfile), refusing bad input early.

Every refusal is a RejectedInput with a stable code. Headers are read before any full decode,
so a decompression bomb or an hour-long recording is refused without allocating for it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import soundfile as sf
import soxr
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from inspector.errors import Code, RejectedInput
from inspector.settings import LimitSettings

SAMPLE_RATE = 16_000

_PIL_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}
_SF_FORMATS = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg"}


@dataclass(frozen=True, slots=True)
class ImageHeader:
    content_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A validated photo: RGB uint8 pixels, H×W×3."""

    pixels: NDArray[np.uint8]
    content_type: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """A validated voice note: float32 mono samples at 16 kHz."""

    samples: NDArray[np.float32]
    source_rate: int
    source_channels: int

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def read_image_header(data: bytes, declared: str | None = None) -> ImageHeader:
    """Identify the format and dimensions from the header only, without decoding pixels."""
    if not data:
        raise RejectedInput(Code.IMAGE_EMPTY, "photo has zero bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
        except Image.DecompressionBombError:
            raise RejectedInput(
                Code.IMAGE_TOO_MANY_PIXELS, "photo header declares an enormous pixel count"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise RejectedInput(
                Code.IMAGE_UNDECODABLE,
                "photo bytes are not a JPEG, PNG, WebP or BMP image (truncated or corrupt?)",
            ) from None
    actual = _PIL_FORMATS.get(fmt or "")
    if actual is None:
        raise RejectedInput(
            Code.IMAGE_UNSUPPORTED_TYPE,
            f"photo is {fmt}; send JPEG, PNG, WebP or BMP",
        )
    if declared is not None and declared != actual:
        raise RejectedInput(
            Code.IMAGE_TYPE_MISMATCH,
            f"photo declared as {declared} but its bytes are {actual}",
        )
    return ImageHeader(actual, width, height)


def decode_image(data: bytes, declared: str | None, limits: LimitSettings) -> DecodedImage:
    """Check a photo's header against the limits, then decode it to RGB pixels."""
    if len(data) > limits.max_image_bytes:
        raise RejectedInput(
            Code.IMAGE_TOO_LARGE,
            f"photo is {len(data)} bytes, above the {limits.max_image_bytes}-byte limit",
        )
    header = read_image_header(data, declared)
    pixels = header.width * header.height
    if pixels > limits.max_pixels:
        raise RejectedInput(
            Code.IMAGE_TOO_MANY_PIXELS,
            f"photo is {header.width}×{header.height} = {pixels} pixels, above the "
            f"{limits.max_pixels}-pixel limit: resize it at the edge",
        )
    if min(header.width, header.height) < limits.min_image_side:
        raise RejectedInput(
            Code.IMAGE_TOO_SMALL,
            f"photo is {header.width}×{header.height}; each side must be at least "
            f"{limits.min_image_side} pixels",
        )
    rgb = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    if rgb is None or rgb.size == 0:
        raise RejectedInput(
            Code.IMAGE_UNDECODABLE, "photo header is valid but its pixel data cannot be decoded"
        )
    if rgb.shape[:2] != (header.height, header.width):
        raise RejectedInput(
            Code.IMAGE_UNDECODABLE,
            f"photo decoded to {rgb.shape[1]}×{rgb.shape[0]}, header said "
            f"{header.width}×{header.height}",
        )
    decoded: NDArray[np.uint8] = rgb.astype(np.uint8, copy=False)  # 8-bit already: no copy
    return DecodedImage(decoded, header.content_type)


def read_audio_header(data: bytes, declared: str | None = None) -> Any:
    """The soundfile header of a WAV, FLAC or OGG file, its type checked against `declared`."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise RejectedInput(
            Code.AUDIO_CORRUPT, "voice note is not a readable WAV, FLAC or OGG file"
        ) from None
    actual = _SF_FORMATS.get(info.format)
    if actual is None:
        raise RejectedInput(
            Code.AUDIO_UNSUPPORTED_TYPE, f"voice note is {info.format}; send WAV, FLAC or OGG"
        )
    if declared is not None and declared != actual:
        raise RejectedInput(
            Code.AUDIO_TYPE_MISMATCH,
            f"voice note declared as {declared} but its bytes are {actual}",
        )
    return info


def audio_content_type(data: bytes) -> str:
    """The content type of a WAV, FLAC or OGG file, from its bytes."""
    return _SF_FORMATS[read_audio_header(data).format]


def decode_audio(data: bytes, declared: str | None, limits: LimitSettings) -> DecodedAudio:
    """Check a voice note's header, decode it and resample to 16 kHz mono float32."""
    if not data:
        raise RejectedInput(Code.AUDIO_EMPTY, "voice note has zero bytes")
    if len(data) > limits.max_audio_bytes:
        raise RejectedInput(
            Code.AUDIO_TOO_LARGE,
            f"voice note is {len(data)} bytes, above the {limits.max_audio_bytes}-byte limit",
        )
    info = read_audio_header(data, declared)
    if info.samplerate <= 0 or info.channels <= 0:
        raise RejectedInput(Code.AUDIO_CORRUPT, "voice note header has no sample rate or channels")
    if info.frames > 0 and info.frames / info.samplerate > limits.max_audio_seconds:
        raise RejectedInput(
            Code.AUDIO_TOO_LONG,
            f"voice note lasts {info.frames / info.samplerate:.1f} s, above the "
            f"{limits.max_audio_seconds:g} s limit",
        )
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError):
        raise RejectedInput(Code.AUDIO_CORRUPT, "voice note data cannot be decoded") from None
    if samples.shape[0] == 0:
        raise RejectedInput(Code.AUDIO_EMPTY, "voice note contains no samples")
    # Headers of streamed files can understate the length; check the decoded length too.
    if samples.shape[0] / rate > limits.max_audio_seconds:
        raise RejectedInput(
            Code.AUDIO_TOO_LONG,
            f"voice note lasts {samples.shape[0] / rate:.1f} s, above the "
            f"{limits.max_audio_seconds:g} s limit",
        )
    if not np.isfinite(samples).all():
        raise RejectedInput(Code.AUDIO_CORRUPT, "voice note contains NaN or infinite samples")
    mono = samples.mean(axis=1, dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return DecodedAudio(np.ascontiguousarray(mono), int(rate), int(samples.shape[1]))


def encode_wav(samples: NDArray[np.float32], sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes of mono float samples in [-1, 1]."""
    out = io.BytesIO()
    sf.write(out, samples, sample_rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def encode_jpeg(rgb: NDArray[np.uint8], quality: int = 90) -> bytes:
    """JPEG bytes of RGB pixels."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return bytes(buf.tobytes())
