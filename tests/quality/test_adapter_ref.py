"""An adapter version is one value from the registry to the control topic and the worker."""

from __future__ import annotations

import pytest

from inspector.control import announcement
from inspector.errors import Code, RejectedInput
from inspector.protocol import (
    AdapterAnnouncement,
    SiteAdapterState,
    adapter_control_topic,
    parse_adapter_announcement,
    utcnow,
)
from inspector.quality import BASE, AdapterRef, is_base, served_name


def test_control_announcement_names_all_or_nothing() -> None:
    full = AdapterAnnouncement(
        site="osaka", name="osaka", version=3, sha256="f" * 64, announced_at=utcnow()
    )
    topic = adapter_control_topic("osaka")
    assert topic == "inspector/v1/control/adapters/osaka"
    assert parse_adapter_announcement(full.to_payload(), topic) == full
    with pytest.raises(RejectedInput) as info:
        parse_adapter_announcement(b'{"site": "osaka", "name": "osaka", "announced_at": "x"}')
    assert info.value.code is Code.PAYLOAD_INVALID
    with pytest.raises(RejectedInput) as info:
        parse_adapter_announcement(full.to_payload(), adapter_control_topic("kyoto"))
    assert info.value.code is Code.PAYLOAD_TOPIC_MISMATCH


def test_an_adapter_ref_crosses_the_wire_in_the_same_fields() -> None:
    ref = AdapterRef("osaka", 3, "f" * 64)
    message = announcement("osaka", ref)
    body = message.to_payload()
    assert b'"name":"osaka"' in body and b'"version":3' in body and b'"sha256":"fff' in body
    assert parse_adapter_announcement(body, adapter_control_topic("osaka")).adapter == ref
    assert announcement("osaka", None).adapter is None
    state = SiteAdapterState.serving("osaka", ref)
    assert (state.name, state.version, state.sha256) == ("osaka", 3, "f" * 64)
    assert state.adapter == ref and SiteAdapterState.serving("osaka", None).adapter is None
    assert ref.tag == str(ref) == "osaka@3"


def test_the_served_base_has_one_name_and_older_verdicts_read_as_it() -> None:
    assert BASE == "base" and served_name("vision") == BASE and served_name("osaka") == "osaka"
    assert is_base("vision") and is_base(BASE) and not is_base(None)
