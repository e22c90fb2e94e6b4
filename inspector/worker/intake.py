"""Turning a received MQTT message into a validated inspection or a refusal with a reason."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from inspector.engine import Bucket, shape_bucket
from inspector.errors import InternalFailure, RejectedInput, RequestRefused
from inspector.media import DecodedAudio, DecodedImage, decode_audio, decode_image
from inspector.mqtt import Message
from inspector.protocol import (
    AudioPart,
    ImagePart,
    InspectionRequest,
    StationKey,
    parse_request,
    parse_station_topic,
)
from inspector.safetext import first_unsafe, visible
from inspector.settings import LimitSettings

log = logging.getLogger(__name__)

# How the engine buckets a request's photos for batching, from their (width, height).
BucketOf = Callable[[Sequence[tuple[int, int]]], Bucket]


@dataclass(slots=True)
class Accepted:
    """A request that passed every check, with its media decoded."""

    message: Message
    request: InspectionRequest
    images: list[DecodedImage]
    audio: DecodedAudio | None
    received: float  # time.monotonic() when the message arrived
    bucket: Bucket = field(default=())

    @property
    def request_id(self) -> str:
        return str(self.request.request_id)

    def refuse(self, error: RejectedInput) -> Refused:
        """This request, refused after validation (a conflict, an engine failure); logged."""
        req = self.request
        refused = Refused(self.message, error, req.request_id, req.station_key, self.received)
        rejection_log.note(refused)
        return refused


@dataclass(slots=True)
class Refused:
    """A message that must be recorded as rejected, published on `rejected`, and acked."""

    message: Message
    error: RejectedInput
    request_id: UUID | None
    station: StationKey | None
    received: float


class RejectionLog:
    """One INFO line per refused request (code, station, request id), at most `burst` lines
    per `window_s`; a flood of bad payloads costs one line saying how many were not logged.

    Every rejection is stored and counted in the metrics anyway; the log is for a person
    watching the worker, who needs to see that refusals happen and of which kind.
    """

    def __init__(
        self,
        burst: int = 10,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        self._log = logger
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._logged = 0
        self._skipped = 0

    def note(self, refused: Refused) -> None:
        """Log `refused`, unless this window already had its `burst` of lines."""
        with self._lock:
            now = self._clock()
            if now - self._window_start >= self._window_s:
                self._window_start, self._logged = now, 0
            if self._logged >= self._burst:
                self._skipped += 1
                return
            self._logged += 1
            skipped, self._skipped = self._skipped, 0
        where = (
            f"{refused.station.site}/{refused.station.line}/{refused.station.station}"
            if refused.station is not None
            else "no station topic"
        )
        more = f" ({skipped} more rejection(s) not logged before this one)" if skipped else ""
        self._log.info(
            "rejected %s from %s, request %s%s",
            refused.error.code.value,
            where,
            refused.request_id or "without a readable id",
            more,
        )


# Intake threads, the batch loop and the watchdog share one: the limit is per worker process.
rejection_log = RejectionLog()


def station_of(topic: str) -> StationKey | None:
    """The station a message's topic names, if it is a station topic."""
    try:
        return parse_station_topic(topic).station
    except Exception:
        return None


def _shown_safely(error: RejectedInput) -> RejectedInput:
    """The refusal with any unsafe character of its reason spelled visibly (stations show it)."""
    if first_unsafe(error.reason) is None:
        return error
    return RejectedInput(error.code, visible(error.reason))


def _decode_photo(index: int, part: ImagePart, limits: LimitSettings) -> DecodedImage:
    """One photo decoded; a refusal names it as the parser does: images[2]: …"""
    try:
        return decode_image(part.data, part.content_type, limits)
    except RejectedInput as exc:
        raise RejectedInput(exc.code, f"images[{index}]: {exc.reason}") from None


def _decode_note(part: AudioPart, limits: LimitSettings) -> DecodedAudio:
    try:
        return decode_audio(part.data, part.content_type, limits)
    except RejectedInput as exc:
        raise RejectedInput(exc.code, f"audio: {exc.reason}") from None


def validate(
    message: Message,
    limits: LimitSettings,
    received: float | None = None,
    bucket_of: BucketOf = shape_bucket,
    rejections: RejectionLog = rejection_log,
    check_topic: bool = True,
) -> Accepted | Refused:
    """Parse and decode one message; any failure becomes a Refused with a stable code.

    Never raises: a refusal of the input keeps its own code, and any other exception (a
    fault in a decoder or in the engine's `bucket_of`) becomes `internal.error` naming the
    exception type. The payload is parsed once. `bucket_of` is the engine's `shape_bucket`:
    the engine knows how it tiles photos. Each refusal of the input is logged at INFO
    through `rejections` (rate-limited). `check_topic=False` takes a request that names its
    station but arrived elsewhere (the canary's golden parts).
    """
    received = time.monotonic() if received is None else received
    station = station_of(message.topic)
    request_id: UUID | None = None
    try:
        request = parse_request(
            message.payload, limits, topic=message.topic if check_topic else None
        )
        request_id = request.request_id
        images = [_decode_photo(index, part, limits) for index, part in enumerate(request.images)]
        audio = _decode_note(request.audio, limits) if request.audio is not None else None
        bucket = bucket_of([(img.width, img.height) for img in images])
    except RequestRefused as exc:
        refused = Refused(message, _shown_safely(exc), exc.request_id, station, received)
        rejections.note(refused)
        return refused
    except RejectedInput as exc:
        refused = Refused(message, _shown_safely(exc), request_id, station, received)
        rejections.note(refused)
        return refused
    except Exception as exc:  # a payload must never take the worker down
        log.error(
            "internal error (%s) validating a message on %s",
            type(exc).__name__,
            visible(message.topic),
            exc_info=not isinstance(exc, RecursionError),
        )
        return Refused(message, InternalFailure("validating", exc), request_id, station, received)
    return Accepted(message, request, images, audio, received, bucket)
