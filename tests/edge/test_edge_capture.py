"""Photo sources: image files (kept or downscaled) and a video written with OpenCV."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.capture import CameraError, CameraSource, FileSource, prepare_bytes
from edge.config import CameraSettings, ImageSettings
from inspector.media import read_image_header
from tests.fixtures.edge import jpeg_bytes, png_bytes, write_video


def test_small_file_photos_are_sent_byte_for_byte(tmp_path: Path) -> None:
    jpg, png = tmp_path / "a.jpg", tmp_path / "b.png"
    jpg.write_bytes(jpeg_bytes(64, 48))
    png.write_bytes(png_bytes(64, 48))
    source = FileSource([jpg, png], ImageSettings(max_side=1600))
    first, second = source.capture(), source.capture()
    assert (first.content_type, first.data) == ("image/jpeg", jpg.read_bytes())
    assert (second.content_type, second.data) == ("image/png", png.read_bytes())
    assert first.size == first.original_size == (64, 48)
    with pytest.raises(CameraError, match="no photo files left"):
        source.capture()


def test_large_photos_are_downscaled_and_reencoded_recording_the_original_size() -> None:
    big = png_bytes(800, 600)
    image = prepare_bytes(big, ImageSettings(max_side=200, jpeg_quality=70))
    assert image.content_type == "image/jpeg"
    assert image.original_size == (800, 600)
    assert image.size == (200, 150)
    header = read_image_header(image.data)
    assert (header.content_type, header.width, header.height) == ("image/jpeg", 200, 150)


def test_reencode_turns_a_small_png_into_jpeg() -> None:
    image = prepare_bytes(png_bytes(64, 48), ImageSettings(reencode=True))
    assert image.content_type == "image/jpeg" and image.size == (64, 48)


def test_video_file_frames_are_captured_in_order_and_loop(tmp_path: Path) -> None:
    video = write_video(tmp_path / "line.avi", frames=3, size=(160, 120))
    camera = CameraSource(CameraSettings(source=str(video)), ImageSettings(max_side=80))
    try:
        shots = [camera.capture() for _ in range(4)]
    finally:
        camera.close()
    means = []
    for shot in shots:
        assert shot.original_size == (160, 120) and shot.size == (80, 60)
        means.append(_grey(shot.data))
    assert means[0] < means[1] < means[2]  # frames 0, 40, 80 grey
    assert means[3] == pytest.approx(means[0], abs=3)  # looped back to the first frame


def _grey(data: bytes) -> float:
    return float(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).mean())


@pytest.fixture
def http_stream(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A video served over HTTP, as an IP camera's stream; records each GET."""
    write_video(tmp_path / "cam.avi", frames=5)
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requests.append(self.path)

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.avi", requests
    server.shutdown()
    server.server_close()


def test_live_stream_drops_stale_frames_and_reopens_when_it_ends(
    http_stream: tuple[str, list[str]],
) -> None:
    url, requests = http_stream
    settings = CameraSettings(source=url, warmup_frames=1, flush_frames=1)
    camera = CameraSource(settings, ImageSettings())
    try:
        greys = [_grey(camera.capture().data) for _ in range(3)]
    finally:
        camera.close()
    # Frames are 0, 40, 80, 120, 160 grey. Warm-up eats frame 0, each capture drops one:
    # frame 2 (80), frame 4 (160), then the stream ended and was reopened: frame 2 again.
    assert greys == pytest.approx([80, 160, 80], abs=4)
    assert requests == ["/cam.avi", "/cam.avi"]


def test_missing_video_file_and_unopenable_device_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="does not exist"):
        CameraSource(CameraSettings(source=str(tmp_path / "nope.avi")), ImageSettings())
    camera = CameraSource(CameraSettings(source="rtsp://127.0.0.1:1/none"), ImageSettings())
    with pytest.raises(CameraError, match="cannot open camera source"):
        camera.capture()
