"""Media validation: each refusal carries its own code; good audio comes out 16 kHz mono."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf

from inspector.errors import Code, RejectedInput
from inspector.media import SAMPLE_RATE, decode_audio, decode_image, encode_jpeg, read_image_header
from inspector.settings import LimitSettings
from tests.core.helpers import jpeg, wav

LIMITS = LimitSettings()


def _png(width: int, height: int, body: bytes | None = None) -> bytes:
    """A PNG whose header may declare far more pixels than its body holds."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = body if body is not None else zlib.compress(b"\x00" * (width * 3 + 1) * height)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _code(fn, *args) -> Code:  # type: ignore[no-untyped-def]
    with pytest.raises(RejectedInput) as info:
        fn(*args)
    assert info.value.reason  # a human message is always there
    return info.value.code


def test_jpeg_decodes_to_rgb_pixels() -> None:
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    img = decode_image(encode_jpeg(rgb, quality=100), "image/jpeg", LIMITS)
    assert (img.width, img.height) == (64, 48)
    assert img.pixels[0, 0, 0] > 180 and img.pixels[0, 0, 2] < 30


def test_png_decodes() -> None:
    img = decode_image(_png(32, 20), "image/png", LIMITS)
    assert img.pixels.shape == (20, 32, 3)


def test_empty_image_is_refused() -> None:
    assert _code(decode_image, b"", "image/jpeg", LIMITS) is Code.IMAGE_EMPTY


def test_declared_type_must_match_the_bytes() -> None:
    assert _code(decode_image, jpeg(), "image/png", LIMITS) is Code.IMAGE_TYPE_MISMATCH


def test_random_bytes_are_undecodable() -> None:
    assert _code(decode_image, b"GIF89a" + b"\x00" * 5, "image/jpeg", LIMITS) in {
        Code.IMAGE_UNDECODABLE,
        Code.IMAGE_UNSUPPORTED_TYPE,
    }
    assert (
        _code(decode_image, b"hello world, no image", "image/jpeg", LIMITS)
        is Code.IMAGE_UNDECODABLE
    )


def test_truncated_jpeg_is_undecodable() -> None:
    data = jpeg(640, 480)
    assert (
        _code(decode_image, data[: len(data) // 3], "image/jpeg", LIMITS) is Code.IMAGE_UNDECODABLE
    )


def test_unsupported_format_is_refused() -> None:
    gif = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(gif, format="GIF")
    assert _code(decode_image, gif.getvalue(), None, LIMITS) is Code.IMAGE_UNSUPPORTED_TYPE


def test_one_pixel_image_is_too_small() -> None:
    assert _code(decode_image, _png(1, 1), "image/png", LIMITS) is Code.IMAGE_TOO_SMALL


def test_decompression_bomb_is_refused_from_the_header() -> None:
    # 8 000 × 8 000 declared, a few bytes of body: refused before any pixel is allocated.
    bomb = _png(8_000, 8_000, body=zlib.compress(b"\x00" * 1000))
    assert read_image_header(bomb).width == 8_000
    with pytest.raises(RejectedInput) as info:
        decode_image(bomb, "image/png", LIMITS)
    assert info.value.code is Code.IMAGE_TOO_MANY_PIXELS
    assert "8000×8000" in info.value.reason
    # Absurd headers (50 000 × 50 000) are refused by the header reader itself.
    huge = _png(50_000, 50_000, body=zlib.compress(b"\x00" * 1000))
    assert _code(decode_image, huge, "image/png", LIMITS) is Code.IMAGE_TOO_MANY_PIXELS


def test_pixel_limit_is_configurable() -> None:
    limits = LimitSettings(max_pixels=640 * 480 - 1)
    assert _code(decode_image, jpeg(640, 480), "image/jpeg", limits) is Code.IMAGE_TOO_MANY_PIXELS


def test_oversize_image_bytes_are_refused() -> None:
    limits = LimitSettings(max_image_bytes=100)
    assert _code(decode_image, jpeg(), "image/jpeg", limits) is Code.IMAGE_TOO_LARGE


def test_stereo_44k_is_resampled_to_16k_mono_keeping_the_tone() -> None:
    audio = decode_audio(wav(seconds=2.0, rate=44_100, channels=2), "audio/wav", LIMITS)
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.source_rate == 44_100 and audio.source_channels == 2
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration_s - 2.0) < 0.01
    spectrum = np.abs(np.fft.rfft(audio.samples))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(audio.samples)
    assert abs(peak_hz - 440) < 2
    assert 0.25 < float(np.max(np.abs(audio.samples))) < 0.35


@pytest.mark.parametrize(("fmt", "ctype"), [("FLAC", "audio/flac"), ("OGG", "audio/ogg")])
def test_flac_and_ogg_decode(fmt: str, ctype: str) -> None:
    audio = decode_audio(wav(seconds=0.5, rate=22_050, fmt=fmt), ctype, LIMITS)
    assert abs(audio.duration_s - 0.5) < 0.02


def test_empty_audio_is_refused() -> None:
    assert _code(decode_audio, b"", "audio/wav", LIMITS) is Code.AUDIO_EMPTY
    assert _code(decode_audio, wav(seconds=0), "audio/wav", LIMITS) is Code.AUDIO_EMPTY


def test_corrupt_audio_is_refused() -> None:
    assert _code(decode_audio, b"RIFF....WAVEjunkjunk", "audio/wav", LIMITS) is Code.AUDIO_CORRUPT
    assert _code(decode_audio, jpeg(), "audio/wav", LIMITS) is Code.AUDIO_CORRUPT


def test_too_long_audio_is_refused_from_the_header() -> None:
    limits = LimitSettings(max_audio_seconds=1.0)
    assert _code(decode_audio, wav(seconds=1.5), "audio/wav", limits) is Code.AUDIO_TOO_LONG


def test_audio_declared_type_must_match() -> None:
    assert _code(decode_audio, wav(), "audio/flac", LIMITS) is Code.AUDIO_TYPE_MISMATCH


def test_non_finite_samples_are_refused() -> None:
    out = io.BytesIO()
    sf.write(
        out, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, format="WAV", subtype="FLOAT"
    )
    assert _code(decode_audio, out.getvalue(), "audio/wav", LIMITS) is Code.AUDIO_CORRUPT
