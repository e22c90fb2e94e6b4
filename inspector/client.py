"""Submitting one inspection from files and waiting for its verdict (people and tests)."""

from __future__ import annotations

import queue
import time
import uuid
from pathlib import Path

from inspector.errors import Code, RejectedInput
from inspector.errors import SubmitTimeout as SubmitTimeout
from inspector.media import audio_content_type, read_image_header
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    AudioPart,
    ImagePart,
    InspectionRequest,
    RationaleMessage,
    RationaleState,
    RejectionMessage,
    StationKey,
    TopicKind,
    VerdictMessage,
    parse_rationale,
    parse_rejection,
    parse_verdict,
    utcnow,
)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RejectedInput(
            Code.PAYLOAD_INVALID, f"cannot read {what} {path}: {exc.strerror}"
        ) from None


def build_request(
    station: StationKey,
    part_id: str,
    images: list[Path],
    audio: Path | None = None,
    note: str | None = None,
    operator: str | None = None,
    adapter: str | None = None,
) -> InspectionRequest:
    """A request from photo and voice-note files, content types taken from the bytes."""
    parts = []
    for path in images:
        data = _read(path, "photo")
        parts.append(ImagePart.from_bytes(read_image_header(data).content_type, data))
    audio_part = None
    if audio is not None:
        data = _read(audio, "voice note")
        audio_part = AudioPart.from_bytes(audio_content_type(data), data)
    return InspectionRequest(
        request_id=uuid.uuid4(),
        site=station.site,
        line=station.line,
        station=station.station,
        part_id=part_id,
        captured_at=utcnow(),
        images=parts,
        audio=audio_part,
        note=note,
        operator=operator,
        adapter=adapter,
    )


def submit(
    transport: MqttTransport, request: InspectionRequest, timeout: float
) -> VerdictMessage | RejectionMessage:
    """Publish a request (QoS 1) and wait for its verdict or rejection.

    A verdict published before its rationale (verdict first) is returned with the rationale
    merged in once it arrives; if it does not arrive within `timeout`, the verdict is returned
    as it is, its rationale still pending.
    """
    answers: queue.Queue[VerdictMessage | RejectionMessage] = queue.Queue()
    rationales: queue.Queue[RationaleMessage] = queue.Queue()
    rid = request.request_id

    def on_verdict(message: Message) -> None:
        verdict = parse_verdict(message.payload)
        if verdict.request_id == rid:
            answers.put(verdict)

    def on_rationale(message: Message) -> None:
        rationale = parse_rationale(message.payload)
        if rationale.request_id == rid:
            rationales.put(rationale)

    def on_rejected(message: Message) -> None:
        rejection = parse_rejection(message.payload)
        if rejection.request_id == rid:
            answers.put(rejection)

    key = request.station_key
    transport.subscribe(key.topic(TopicKind.VERDICT), on_verdict)
    transport.subscribe(key.topic(TopicKind.REJECTED), on_rejected)
    transport.subscribe(key.topic(TopicKind.RATIONALE), on_rationale)
    transport.start()
    if not transport.wait_connected(min(timeout, transport.settings.connect_timeout_s)):
        raise SubmitTimeout(
            f"cannot connect to the broker at {transport.settings.host}:{transport.settings.port}"
        )
    deadline = time.monotonic() + timeout
    transport.publish_and_wait(key.topic(TopicKind.REQUEST), request.to_payload(), timeout)
    try:
        answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise SubmitTimeout(
            f"no verdict for {rid} within {timeout:g} s; is a worker running?"
        ) from None
    if isinstance(answer, RejectionMessage) or answer.rationale_state is not RationaleState.PENDING:
        return answer
    try:
        rationale = rationales.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        return answer
    return answer.with_rationale(rationale)
