"""Photo sources at the station: OpenCV cameras, streams and video files, and image files.

Every source yields a `CapturedImage`: encoded bytes ready for the request, with the size
the photo had before any downscaling, so the station knows what it sent.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from inspector.errors import CameraError as CameraError
from inspector.errors import Code, RejectedInput
from inspector.media import encode_jpeg, read_image_header

from .config import CameraSettings, ImageSettings

log = logging.getLogger(__name__)

# What the worker accepts without conversion; anything else is re-encoded as JPEG.
_PASS_THROUGH = ("image/jpeg", "image/png")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True, slots=True)
class CapturedImage:
    """One photo, encoded and ready to send."""

    content_type: str
    data: bytes
    original_size: tuple[int, int]
    size: tuple[int, int]


class ImageSource(Protocol):
    """Anything that takes a photo on demand."""

    def capture(self) -> CapturedImage:
        """Take one photo now."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...


def prepare_frame(rgb: NDArray[np.uint8], settings: ImageSettings) -> CapturedImage:
    """Downscale RGB pixels to the configured max side and encode them as JPEG."""
    height, width = rgb.shape[:2]
    scaled = _downscale(rgb, settings.max_side)
    data = encode_jpeg(scaled, quality=settings.jpeg_quality)
    return CapturedImage("image/jpeg", data, (width, height), (scaled.shape[1], scaled.shape[0]))


def prepare_bytes(data: bytes, settings: ImageSettings) -> CapturedImage:
    """Keep an encoded photo as it is when allowed, else decode, downscale and re-encode it."""
    header = read_image_header(data)
    size = (header.width, header.height)
    too_big = settings.max_side is not None and max(size) > settings.max_side
    if header.content_type in _PASS_THROUGH and not too_big and not settings.reencode:
        return CapturedImage(header.content_type, data, size, size)
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RejectedInput(Code.IMAGE_UNDECODABLE, "photo header is valid but pixels are not")
    return prepare_frame(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8), settings)


def read_image_file(path: Path, settings: ImageSettings) -> CapturedImage:
    """Read and prepare one photo file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CameraError(f"cannot read photo {path}: {exc.strerror}") from None
    return prepare_bytes(data, settings)


def _downscale(rgb: NDArray[np.uint8], max_side: int | None) -> NDArray[np.uint8]:
    height, width = rgb.shape[:2]
    if max_side is None or max(width, height) <= max_side:
        return rgb
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # INTER_AREA avoids the aliasing that hides fine scratches when shrinking.
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


class FileSource:
    """One-shot photo files: each capture takes the next path, in order."""

    def __init__(self, paths: list[Path], settings: ImageSettings) -> None:
        self._paths = list(paths)
        self._settings = settings

    def capture(self) -> CapturedImage:
        """Read the next file."""
        if not self._paths:
            raise CameraError("no photo files left to capture")
        return read_image_file(self._paths.pop(0), self._settings)

    def close(self) -> None:
        """Nothing to release."""


class CameraSource:
    """An OpenCV VideoCapture: a device index, an RTSP/HTTP stream, or a video file."""

    def __init__(self, camera: CameraSettings, image: ImageSettings) -> None:
        if camera.source is None:
            raise CameraError("camera.source is not set")
        self._camera = camera
        self._image = image
        self._lock = threading.Lock()
        self._cap: cv2.VideoCapture | None = None
        src = camera.source
        self._is_file = isinstance(src, str) and not _is_url(src) and not src.isdigit()
        if self._is_file and not Path(str(src)).is_file():
            raise CameraError(f"camera.source: video file {src} does not exist")

    @property
    def description(self) -> str:
        """The source as the operator configured it."""
        return str(self._camera.source)

    def _open(self) -> cv2.VideoCapture:
        src = self._camera.source
        target: int | str = int(src) if isinstance(src, str) and src.isdigit() else src  # type: ignore[assignment]
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            raise CameraError(f"cannot open camera source {src!r}")
        if self._camera.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._camera.width)
        if self._camera.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._camera.height)
        if not self._is_file:
            for _ in range(self._camera.warmup_frames):
                cap.grab()
        return cap

    def capture(self) -> CapturedImage:
        """Take the next frame (a file) or a fresh frame (a live source)."""
        with self._lock:
            if self._cap is None:
                self._cap = self._open()
            frame = self._read(self._cap)
            if frame is None:
                # Streams drop and files end: reopen once before giving up.
                self._cap.release()
                self._cap = self._open()
                frame = self._read(self._cap)
            if frame is None:
                raise CameraError(f"camera source {self.description!r} returned no frame")
        return prepare_frame(
            np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), np.uint8), self._image
        )

    def _read(self, cap: cv2.VideoCapture) -> NDArray[np.uint8] | None:
        if not self._is_file:
            # Live sources buffer frames; drop the stale ones so the photo shows the part now.
            for _ in range(self._camera.flush_frames):
                cap.grab()
        ok, frame = cap.read()
        if not ok and self._is_file and self._camera.loop_video:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        if not ok or frame is None:
            return None
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        """Release the capture device."""
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None


def _is_url(source: str) -> bool:
    return "://" in source
