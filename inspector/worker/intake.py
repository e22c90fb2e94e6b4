"""Turning a received MQTT message into a validated inspection or a refusal with a reason."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from inspector.engine import Bucket, shape_bucket
from inspector.errors import Code, RejectedInput
from inspector.media import DecodedAudio, DecodedImage, decode_audio, decode_image
from inspector.mqtt import Message
from inspector.protocol import (
    InspectionRequest,
    StationKey,
    parse_request,
    parse_station_topic,
    peek_request_id,
)
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
        """This request, refused after validation (a conflict, an engine failure)."""
        req = self.request
        return Refused(self.message, error, req.request_id, req.station_key, self.received)


@dataclass(slots=True)
class Refused:
    """A message that must be recorded as rejected, published on `rejected`, and acked."""

    message: Message
    error: RejectedInput
    request_id: UUID | None
    station: StationKey | None
    received: float


def _station_of(topic: str) -> StationKey | None:
    try:
        return parse_station_topic(topic).station
    except RejectedInput:
        return None


def validate(
    message: Message,
    limits: LimitSettings,
    received: float | None = None,
    bucket_of: BucketOf = shape_bucket,
) -> Accepted | Refused:
    """Parse and decode one message; any failure becomes a Refused with a stable code.

    `bucket_of` is the engine's `shape_bucket`: the engine knows how it tiles photos.
    """
    received = time.monotonic() if received is None else received
    try:
        request = parse_request(message.payload, limits, topic=message.topic)
        images = [decode_image(p.data, p.content_type, limits) for p in request.images]
        audio = (
            decode_audio(request.audio.data, request.audio.content_type, limits)
            if request.audio is not None
            else None
        )
    except RejectedInput as exc:
        return Refused(
            message, exc, peek_request_id(message.payload), _station_of(message.topic), received
        )
    except Exception as exc:  # a payload must never take the worker down
        log.exception("unexpected failure validating a message on %s", message.topic)
        error = RejectedInput(Code.PAYLOAD_INVALID, f"payload could not be processed: {exc}")
        return Refused(
            message, error, peek_request_id(message.payload), _station_of(message.topic), received
        )
    bucket = bucket_of([(img.width, img.height) for img in images])
    return Accepted(message, request, images, audio, received, bucket)
