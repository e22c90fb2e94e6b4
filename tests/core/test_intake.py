"""The intake: every message ends as Accepted or Refused, with a reason an operator can act on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from inspector.errors import Code
from inspector.mqtt import Message
from inspector.protocol import request_topic
from inspector.safetext import first_unsafe
from inspector.settings import LimitSettings
from inspector.worker.intake import Accepted, Refused, validate
from tests.core.helpers import make_request

TOPIC = request_topic("osaka", "l1", "s1")


def _message(payload: bytes, topic: str = TOPIC) -> Message:
    return Message(topic, payload, 1, False, 1, False)


def _refused(payload: bytes, **kw: Any) -> Refused:
    outcome = validate(_message(payload), LimitSettings(), **kw)
    assert isinstance(outcome, Refused), "expected a refusal"
    assert first_unsafe(outcome.error.reason) is None, outcome.error.reason
    return outcome


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(make_request().to_payload())
    for key, value in changes.items():
        if value is _DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


_DROP = object()


def _payload(**changes: Any) -> bytes:
    return json.dumps(_body(**changes)).encode()


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_refused_as_too_deep_and_the_request_id_is_kept(depth: int) -> None:
    top = _refused(b"[" * depth + b"]" * depth)
    assert top.error.code is Code.PAYLOAD_TOO_DEEP
    assert top.request_id is None and top.station is not None
    rid = uuid.uuid4()
    inner = f'{{"request_id": "{rid}", "note": '.encode() + b"[" * depth + b"]" * depth + b"}"
    in_note = _refused(inner)
    assert in_note.error.code is Code.PAYLOAD_TOO_DEEP
    assert "too deeply" in in_note.error.reason


def test_a_refused_request_keeps_its_request_id_for_the_rejection_record() -> None:
    body = _body(site="Osaka")
    refused = _refused(json.dumps(body).encode())
    assert str(refused.request_id) == body["request_id"]
    assert _refused(b'{"request_id": "not-a-uuid"}').request_id is None


@pytest.mark.parametrize(
    ("changes", "code", "reason"),
    [
        ({"operator": "o" * 65}, Code.PAYLOAD_INVALID, "operator: is longer than 64 characters"),
        (
            {"operator": "tana\x00ka"},
            Code.PAYLOAD_UNSAFE_TEXT,
            "operator: contains a control character (U+0000) at position 5",
        ),
        ({"part_id": "p" * 129}, Code.PAYLOAD_INVALID, "part_id: is longer than 128 characters"),
        ({"part_id": ""}, Code.PAYLOAD_INVALID, "part_id: is empty"),
        ({"part_id": _DROP}, Code.PAYLOAD_INVALID, "part_id: missing"),
        (
            {"part_id": "P-\u202eLIAF\u202c"},
            Code.PAYLOAD_UNSAFE_TEXT,
            "part_id: contains a bidirectional formatting character (U+202E) at position 3",
        ),
        (
            {"part_id": "P-1\u2028"},
            Code.PAYLOAD_UNSAFE_TEXT,
            "part_id: contains a line or paragraph separator (U+2028) at position 4",
        ),
        (
            {"part_id": "P\u009b31m"},
            Code.PAYLOAD_UNSAFE_TEXT,
            "part_id: contains a control character (U+009B) at position 2",
        ),
        (
            {"part_id": "P\u0085"},
            Code.PAYLOAD_UNSAFE_TEXT,
            "part_id: contains a control character (U+0085) at position 2",
        ),
        (
            {"note": "ok\u200bthen"},
            Code.PAYLOAD_UNSAFE_TEXT,
            "note: contains an invisible formatting character (U+200B) at position 3",
        ),
        (
            {"note": "\u2066x"},
            Code.PAYLOAD_UNSAFE_TEXT,
            "note: contains a bidirectional formatting character (U+2066) at position 1",
        ),
        ({"note": "n" * 2001}, Code.PAYLOAD_INVALID, "note: is longer than 2000 characters"),
        ({"site": "Osaka"}, Code.PAYLOAD_INVALID, "site: contains an uppercase letter 'O'"),
        ({"station": "s" * 65}, Code.PAYLOAD_INVALID, "station: is longer than 64 characters"),
        ({"line": "-l1"}, Code.PAYLOAD_INVALID, "line: starts with '-'"),
        ({"adapter": 7}, Code.PAYLOAD_INVALID, "adapter: must be a string"),
        ({"request_id": "r-1"}, Code.PAYLOAD_INVALID, "request_id: is not a UUID"),
        (
            {"captured_at": "2026-11-23T10:00:00"},
            Code.PAYLOAD_INVALID,
            "captured_at: has no timezone",
        ),
        ({"images": []}, Code.PAYLOAD_INVALID, "images: must not be empty"),
        ({"color": "red"}, Code.PAYLOAD_INVALID, "color: is not a field of this message"),
        ({"schema": _DROP}, Code.PAYLOAD_UNSUPPORTED_SCHEMA, "schema: missing"),
        ({"schema": "inspector.request/v0"}, Code.PAYLOAD_UNSUPPORTED_SCHEMA, "schema: 'inspector"),
    ],
)
def test_each_refusal_names_the_field_and_says_what_is_wrong(
    changes: dict[str, Any], code: Code, reason: str
) -> None:
    refused = _refused(_payload(**changes))
    assert refused.error.code is code
    assert reason in refused.error.reason


def _with_media(part: str, **changes: Any) -> bytes:
    body = _body()
    target = body["images"][0] if part == "image" else body["audio"]
    target.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        (
            _with_media("image", content_type="text/plain"),
            Code.IMAGE_UNSUPPORTED_TYPE,
            "images[0].content_type: 'text/plain' is not a supported type; send one of "
            "'image/jpeg'",
        ),
        (
            _with_media("audio", content_type="audio/mpeg"),
            Code.AUDIO_UNSUPPORTED_TYPE,
            "audio.content_type: 'audio/mpeg' is not a supported type; send one of 'audio/wav'",
        ),
        (
            _with_media("image", sha256="A" * 64),
            Code.PAYLOAD_INVALID,
            "images[0].sha256: is not a lowercase sha256 hex (it has uppercase letters)",
        ),
        (
            _with_media("audio", sha256="abc"),
            Code.PAYLOAD_INVALID,
            "audio.sha256: is not a lowercase sha256 hex (3 characters)",
        ),
        (_with_media("image", data="***"), Code.PAYLOAD_BAD_BASE64, "images[0].data: is not valid"),
    ],
)
def test_media_refusals_use_the_most_specific_code(payload: bytes, code: Code, reason: str) -> None:
    refused = _refused(payload)
    assert refused.error.code is code
    assert reason in refused.error.reason


def test_newlines_and_tabs_are_allowed_in_a_note_only() -> None:
    ok = validate(_message(_payload(note="line 1\n\tline 2")), LimitSettings())
    assert isinstance(ok, Accepted) and ok.request.note == "line 1\n\tline 2"
    assert _refused(_payload(part_id="P\n1")).error.code is Code.PAYLOAD_UNSAFE_TEXT
    assert _refused(_payload(operator="a\tb")).error.code is Code.PAYLOAD_UNSAFE_TEXT


def test_part_ids_of_any_script_with_spaces_and_brackets_are_accepted() -> None:
    for part_id in ("部品 0001", "[/]", "[link=https://x]y[/link]", "Ø-12 b"):
        outcome = validate(_message(_payload(part_id=part_id)), LimitSettings())
        assert isinstance(outcome, Accepted), part_id


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x1b[31m not json \x9b",
        json.dumps({"\x1b]8;;https://x\x07": 1, "schema": "inspector.request/v1"}).encode(),
        json.dumps({"schema": "\u202eevil\x1b[2J"}).encode(),
        _payload(part_id="\x1b[31mFAIL"),
    ],
)
def test_reasons_never_echo_raw_control_or_bidi_characters(payload: bytes) -> None:
    reason = _refused(payload).error.reason
    assert not any(ch in reason for ch in "\x00\x1b\x07\x9b\u202e")


def test_an_internal_fault_is_refused_as_internal_error_naming_only_its_type() -> None:
    def broken_bucket(shapes: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
        raise ZeroDivisionError("secret path /etc/site.key \x1b[31m")

    refused = _refused(make_request().to_payload(), bucket_of=broken_bucket)
    assert refused.error.code is Code.INTERNAL_ERROR
    assert "ZeroDivisionError" in refused.error.reason
    assert "secret" not in refused.error.reason
    assert refused.request_id is not None


def test_a_payload_on_no_station_topic_is_refused_without_a_station() -> None:
    refused = validate(_message(b"{}", topic="somewhere/else"), LimitSettings())
    assert isinstance(refused, Refused) and refused.station is None


def _photos(*datas: bytes) -> bytes:
    from inspector.protocol import ImagePart

    images = [ImagePart.from_bytes("image/jpeg", data) for data in datas]
    return make_request(images=images, audio=None).to_payload()


def test_every_photo_refusal_names_the_photo_by_its_index() -> None:
    from tests.core.helpers import jpeg

    good = jpeg()
    not_a_jpeg = _refused(_photos(good, good, b"not a photo at all"))
    assert not_a_jpeg.error.code is Code.IMAGE_UNDECODABLE
    assert not_a_jpeg.error.reason.startswith("images[2]: photo bytes are not a JPEG")
    tiny = _refused(_photos(good, jpeg(8, 8)))
    assert tiny.error.code is Code.IMAGE_TOO_SMALL
    assert tiny.error.reason.startswith("images[1]: photo is 8×8")


def test_a_voice_note_refusal_names_the_audio_field() -> None:
    body = _body()
    body["audio"]["data"] = "AAAA"
    body["audio"]["sha256"] = "709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c"
    refused = _refused(json.dumps(body).encode())
    assert refused.error.code is Code.AUDIO_CORRUPT
    assert refused.error.reason.startswith("audio: voice note is not a readable")


def test_too_many_photos_is_said_once_without_a_doubled_prefix() -> None:
    from tests.core.helpers import jpeg

    body = json.loads(_photos(jpeg()))
    body["images"] *= 9
    refused = _refused(json.dumps(body).encode())
    assert refused.error.code is Code.PAYLOAD_INVALID
    assert refused.error.reason == "images: 9 photos in one request, at most 8 allowed"


def test_a_huge_station_name_is_quoted_as_a_bounded_excerpt_with_its_length() -> None:
    station = "s" * 10_309
    refused = validate(
        _message(_payload(), topic=f"inspector/v1/osaka/l1/{station}/request"), LimitSettings()
    )
    assert isinstance(refused, Refused)
    assert refused.error.code is Code.TOPIC_INVALID
    assert "(10309 characters)" in refused.error.reason
    assert len(refused.error.reason) < 200, refused.error.reason


@pytest.mark.parametrize(
    "text",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family: man ZWJ woman ZWJ girl
        "\u2764\ufe0f\u200d\U0001f525",  # heart on fire: the joiner after a variation selector
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian mi-khaham, with a ZWNJ
        "\u0915\u094d\u200d\u0937",  # Devanagari: a half form through ZWJ after the virama
    ],
)
def test_joiners_between_visible_characters_are_accepted_in_note_part_id_and_operator(
    text: str,
) -> None:
    for field in ("note", "part_id", "operator"):
        outcome = validate(_message(_payload(**{field: text})), LimitSettings())
        assert isinstance(outcome, Accepted), (field, text)
        assert getattr(outcome.request, field) == text


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("\u200dP-1", 1),  # joins nothing before it
        ("P-1\u200c", 4),  # nor after
        ("P\u200d\u200d1", 2),  # doubled
        ("P \u200d1", 3),  # beside a space
        ("P\u202e1", 2),  # a bidi override stays refused
        ("P\u2066x\u2069", 2),  # an isolate too
        ("P\u200b1", 2),  # a zero-width space is no joiner
    ],
)
def test_stray_joiners_and_other_format_characters_stay_refused(text: str, position: int) -> None:
    for field in ("part_id", "operator", "note"):
        refused = _refused(_payload(**{field: text}))
        assert refused.error.code is Code.PAYLOAD_UNSAFE_TEXT, field
        assert f"at position {position}" in refused.error.reason


def test_each_rejection_is_logged_at_info_with_code_station_and_request_id_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from inspector.worker.intake import RejectionLog

    now = [0.0]
    rejections = RejectionLog(burst=3, window_s=10.0, clock=lambda: now[0])
    bodies = [_body(site="Osaka") for _ in range(6)]
    with caplog.at_level(logging.INFO, logger="inspector.worker.intake"):
        for body in bodies[:5]:
            validate(_message(json.dumps(body).encode()), LimitSettings(), rejections=rejections)
        now[0] = 10.0  # the next window
        validate(_message(json.dumps(bodies[5]).encode()), LimitSettings(), rejections=rejections)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 4, lines
    first = bodies[0]["request_id"]
    assert lines[0] == f"rejected payload.invalid from osaka/l1/s1, request {first}"
    assert lines[3].endswith("(2 more rejection(s) not logged before this one)")
    assert bodies[5]["request_id"] in lines[3]
