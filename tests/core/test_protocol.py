"""The wire contract: round trips, topics and every refusal with its stable code."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from inspector.errors import Code, RejectedInput
from inspector.protocol import (
    Decision,
    RejectionMessage,
    TopicKind,
    VerdictMessage,
    WorkerStatus,
    message_schemas,
    parse_request,
    parse_station_topic,
    parse_verdict,
    request_topic,
    shared_request_subscription,
    status_topic,
    utcnow,
)
from inspector.settings import LimitSettings
from tests.core.helpers import jpeg, make_request


def _mutate(payload: bytes, **changes: Any) -> bytes:
    body = json.loads(payload)
    body.update(changes)
    return json.dumps(body).encode()


def _refusal(payload: bytes, **kw: Any) -> RejectedInput:
    with pytest.raises(RejectedInput) as info:
        parse_request(payload, **kw)
    return info.value


def test_request_round_trips_through_json_with_media_intact() -> None:
    req = make_request(operator="tanaka", adapter="osaka-v2")
    back = parse_request(req.to_payload(), topic=request_topic("osaka", "l1", "s1"))
    assert back == req
    assert back.images[0].data == req.images[0].data
    assert back.fingerprint() == req.fingerprint()


def test_fingerprint_changes_with_content_not_with_encoding() -> None:
    req = make_request()
    body = json.loads(req.to_payload())
    reordered = json.dumps(dict(reversed(list(body.items())))).encode()
    assert parse_request(reordered).fingerprint() == req.fingerprint()
    other = req.model_copy(update={"part_id": "P-0002"})
    assert other.fingerprint() != req.fingerprint()


def test_verdict_and_status_round_trip() -> None:
    verdict = VerdictMessage(
        request_id=uuid.uuid4(),
        site="osaka",
        line="l1",
        station="s1",
        part_id="P-1",
        verdict=Decision.FAIL,
        confidence=0.91,
        p_pass=0.09,
        rationale="scratch on the left flange",
        defects=[{"type": "scratch", "where": "left flange"}],
        model="phi4",
        adapter="vision",
        prompt_version="v1",
        worker_id="w1",
        latency_ms=12.5,
        decided_at=utcnow(),
    )
    assert parse_verdict(verdict.to_payload()) == verdict
    _a_newer_workers_fields_are_ignored_and_anything_else_still_refused(verdict)
    status = WorkerStatus(worker_id="w1", state="online", version="0.1.0", updated_at=utcnow())
    assert WorkerStatus.model_validate_json(status.to_payload()) == status


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xff\xfe not json", Code.PAYLOAD_NOT_JSON),
        (b"[1, 2]", Code.PAYLOAD_INVALID),
        (b'{"schema": "inspector.request/v0"}', Code.PAYLOAD_UNSUPPORTED_SCHEMA),
    ],
)
def test_malformed_payloads_are_refused_with_their_code(payload: bytes, code: Code) -> None:
    assert _refusal(payload).code is code


def test_missing_or_foreign_schema_is_unsupported_even_with_other_errors() -> None:
    body = json.loads(make_request().to_payload())
    del body["schema"]
    assert _refusal(json.dumps(body).encode()).code is Code.PAYLOAD_UNSUPPORTED_SCHEMA
    body.update({"schema": "inspector.request/v2", "site": "Not A Slug"})
    err = _refusal(json.dumps(body).encode())
    assert err.code is Code.PAYLOAD_UNSUPPORTED_SCHEMA and "inspector.request/v2" in err.reason


def test_oversize_payload_is_refused_before_parsing() -> None:
    payload = make_request().to_payload()
    err = _refusal(payload, limits=LimitSettings(max_payload_bytes=len(payload) - 1))
    assert err.code is Code.PAYLOAD_TOO_LARGE
    assert str(len(payload)) in err.reason


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("request_id", "not-a-uuid", "request_id"),
        ("site", "Osaka Plant", "site"),
        ("line", "-l1", "line"),
        ("station", "s" * 65, "station"),
        ("captured_at", "2026-11-23T10:00:00", "captured_at"),
        ("captured_at", "yesterday", "captured_at"),
        ("images", [], "images"),
        ("part_id", "", "part_id"),
        ("unexpected", 1, "unexpected"),
    ],
)
def test_schema_violations_name_the_field(field: str, value: Any, needle: str) -> None:
    err = _refusal(_mutate(make_request().to_payload(), **{field: value}))
    assert err.code is Code.PAYLOAD_INVALID
    assert needle in err.reason


def test_checksum_mismatch_is_refused() -> None:
    req = make_request()
    body = json.loads(req.to_payload())
    body["images"][0]["data"] = base64.b64encode(jpeg(seed=1)).decode()
    assert _refusal(json.dumps(body).encode()).code is Code.PAYLOAD_CHECKSUM_MISMATCH


def test_invalid_base64_is_refused() -> None:
    body = json.loads(make_request().to_payload())
    body["images"][0]["data"] = "***not base64***"
    assert _refusal(json.dumps(body).encode()).code is Code.PAYLOAD_BAD_BASE64


def test_per_image_and_audio_size_limits_apply() -> None:
    payload = make_request().to_payload()
    limits = LimitSettings(max_image_bytes=100)
    assert _refusal(payload, limits=limits).code is Code.IMAGE_TOO_LARGE
    limits = LimitSettings(max_audio_bytes=100)
    assert _refusal(payload, limits=limits).code is Code.AUDIO_TOO_LARGE


def test_too_many_images_and_long_notes_are_refused() -> None:
    req = make_request(images=make_request().images * 3, note="x" * 50)
    assert (
        _refusal(req.to_payload(), limits=LimitSettings(max_images=2)).code is Code.PAYLOAD_INVALID
    )
    err = _refusal(req.to_payload(), limits=LimitSettings(max_note_chars=10))
    assert "note" in err.reason


def test_request_on_another_stations_topic_is_refused() -> None:
    err = _refusal(make_request().to_payload(), topic=request_topic("osaka", "l1", "s2"))
    assert err.code is Code.PAYLOAD_TOPIC_MISMATCH


def test_topics_are_built_and_parsed_symmetrically() -> None:
    topic = request_topic("osaka", "l1", "s1")
    assert topic == "inspector/v1/osaka/l1/s1/request"
    parsed = parse_station_topic(topic)
    assert (parsed.station.site, parsed.station.line, parsed.station.station) == (
        "osaka",
        "l1",
        "s1",
    )
    assert parsed.kind is TopicKind.REQUEST
    assert parsed.station.topic(TopicKind.VERDICT) == "inspector/v1/osaka/l1/s1/verdict"
    assert shared_request_subscription("g1") == "$share/g1/inspector/v1/+/+/+/request"
    assert status_topic("w-1") == "inspector/v1/workers/w-1/status"


@pytest.mark.parametrize(
    "topic",
    [
        "inspector/v1/osaka/l1/request",
        "other/v1/a/b/c/request",
        "inspector/v1/A/b/c/request",
        "inspector/v1/a/b/c/nonsense",
        "inspector/v1/a/+/c/request",
    ],
)
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(RejectedInput) as info:
        parse_station_topic(topic)
    assert info.value.code is Code.TOPIC_INVALID


def test_topic_builders_refuse_unsafe_names() -> None:
    with pytest.raises(RejectedInput):
        request_topic("osaka/#", "l1", "s1")


def test_every_message_schema_is_valid_json_schema() -> None:
    schemas = message_schemas()
    assert set(schemas) == {
        "request",
        "verdict",
        "rationale",
        "rejection",
        "worker-status",
        "adapter-control",
        "canary-health",
    }
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schemas["request"])
    assert not list(validator.iter_errors(json.loads(make_request().to_payload())))


def test_rejection_message_carries_code_and_hash() -> None:
    msg = RejectionMessage(
        code=Code.IMAGE_UNDECODABLE.value,
        message="photo cannot be decoded",
        payload_sha256="0" * 64,
        worker_id="w1",
        rejected_at=utcnow(),
    )
    assert json.loads(msg.to_payload())["code"] == "image.undecodable"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parser_refuses_arbitrary_bytes_with_a_code(data: bytes) -> None:
    with pytest.raises(RejectedInput) as info:
        parse_request(data)
    assert info.value.code in set(Code)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "schema",
                "request_id",
                "site",
                "images",
                "captured_at",
                "line",
                "station",
                "part_id",
                "audio",
            ]
        ),
        _json,
    )
)
def test_parser_never_crashes_on_arbitrary_json_objects(body: dict[str, Any]) -> None:
    body.setdefault("schema", "inspector.request/v1")
    with pytest.raises(RejectedInput):
        parse_request(json.dumps(body).encode())


def _a_newer_workers_fields_are_ignored_and_anything_else_still_refused(
    verdict: VerdictMessage,
) -> None:
    # Workers and stations are upgraded apart: a field a newer worker adds to a v1 verdict
    # must not make every verdict unreadable at a station that has not been upgraded yet.
    data = json.loads(verdict.to_payload())
    newer = {**data, "heat_map": {"x": 3}, "second_opinion": "FAIL"}
    assert parse_verdict(json.dumps(newer).encode()) == verdict
    # Only top-level additions within the same schema version are let through.
    nested = {**data, "defects": [{"type": "scratch", "where": "left flange", "size": 3}]}
    with pytest.raises(ValidationError):
        parse_verdict(json.dumps(nested).encode())
    with pytest.raises(ValidationError):
        parse_verdict(json.dumps({**newer, "schema": "inspector.verdict/v2"}).encode())
    missing = {k: v for k, v in newer.items() if k != "p_pass"}
    with pytest.raises(ValidationError):
        parse_verdict(json.dumps(missing).encode())
    with pytest.raises(ValidationError):
        parse_verdict(b"not json")
