"""Fuzzing the intake: whatever arrives, validation returns Accepted or Refused with a code."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.errors import Code
from inspector.mqtt import Message
from inspector.protocol import ImagePart, request_topic
from inspector.safetext import first_unsafe
from inspector.settings import LimitSettings
from inspector.worker.intake import Accepted, Refused, validate
from tests.core.helpers import jpeg, make_request

TOPIC = request_topic("osaka", "l1", "s1")
LIMITS = LimitSettings(max_payload_bytes=200_000)
CODES = set(Code)
# A small valid request (one 32×32 photo, no voice note) keeps each example cheap.
VALID = make_request(images=[ImagePart.from_bytes("image/jpeg", jpeg(32, 32))], audio=None)
VALID_BODY: dict[str, Any] = json.loads(VALID.to_payload())
FIELDS = sorted(VALID_BODY)
NASTY = '\x00\x07\x1b\x7f\x85\x9b\x9d\u2028\u2029\u202a\u202e\u2066\u2069\u200b\ufeff[]/{}"\\é部'

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(NASTY), max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FAST = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check(payload: bytes) -> Accepted | Refused:
    outcome = validate(Message(TOPIC, payload, 1, False, 1, False), LIMITS)
    assert isinstance(outcome, Accepted | Refused)
    if isinstance(outcome, Refused):
        assert outcome.error.code in CODES
        assert outcome.error.reason
        assert first_unsafe(outcome.error.reason) is None, outcome.error.reason
    return outcome


@settings(FAST, max_examples=500)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_refused_with_a_code_and_a_clean_reason(data: bytes) -> None:
    assert isinstance(_check(data), Refused)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    body = json.loads(json.dumps(VALID_BODY))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "drop", "nasty", "deep", "media", "extra"]))
        field = draw(st.sampled_from(FIELDS))
        if kind == "replace":
            body[field] = draw(_json)
        elif kind == "drop":
            body.pop(field, None)
        elif kind == "nasty":
            text = draw(
                st.text(alphabet=st.sampled_from(NASTY + "abc-01"), min_size=1, max_size=70)
            )
            body[field] = text
        elif kind == "deep":
            depth = draw(st.integers(150, 2_000))
            return json.dumps(body)[:-1].encode() + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
        elif kind == "media":
            part = dict(VALID_BODY["images"][0])
            part[draw(st.sampled_from(["data", "sha256", "content_type"]))] = draw(_json)
            body["images"] = [part]
        else:
            body[draw(st.text(alphabet=st.sampled_from(NASTY + "xyz"), max_size=10))] = draw(_json)
    raw = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    return raw if cut is None else raw[:cut]


@FAST
@given(_mutated())
def test_mutated_requests_are_accepted_or_refused_with_a_code(payload: bytes) -> None:
    _check(payload)


def test_the_unmutated_request_is_accepted() -> None:
    assert isinstance(_check(VALID.to_payload()), Accepted)
