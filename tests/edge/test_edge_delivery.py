"""End to end on the real broker: captures are spooled, survive outages, all get delivered."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from edge.agent import EdgeAgent
from edge.audio import VoiceNote, VoiceRecorder
from edge.config import EdgeSettings
from edge.spool import SpoolFull
from edge.triggers import CaptureCommand
from inspector.protocol import TopicKind, parse_request
from tests.fixtures.edge import (
    BrokerObserver,
    ScriptedMicrophone,
    TcpRelay,
    jpeg_bytes,
    png_bytes,
    screen,
    silence,
    tone,
    wav_bytes,
)


def test_broker_away_then_back_spool_grows_then_drains_every_request_delivered(
    make_edge_settings: Callable[..., EdgeSettings],
    relay: TcpRelay,
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    # The agent starts against a port nobody listens on: the broker is "away".
    settings = make_edge_settings(broker={"port": relay.port})
    seen = observe(settings.station.key.topic(TopicKind.REQUEST))
    photos = []
    for i in range(12):
        photo = tmp_path / f"part-{i:02d}.jpg"
        photo.write_bytes(jpeg_bytes(seed=i))
        photos.append(photo)
    with EdgeAgent(settings, quiet_console) as agent:
        ids = [agent.capture_file(p).request_id for p in photos]
        assert agent.stats().depth == 12
        assert not agent.transport.connected
        assert seen.messages == []
        relay.start()  # the broker comes back on that port
        assert agent.publisher.wait_delivered(ids, timeout=20)
        assert agent.stats().depth == 0
    shown = screen(quiet_console)
    assert "cannot reach the broker; captures stay in the spool" in shown
    assert "connected again" in shown
    got = seen.wait_for(12, 10)
    requests = [parse_request(m.payload, topic=m.topic) for m in got]
    assert sorted(str(r.request_id) for r in requests) == sorted(ids)
    assert {r.part_id for r in requests} == {p.stem for p in photos}
    assert all(r.images[0].data == photos[int(r.part_id[-2:])].read_bytes() for r in requests)


def test_capture_with_a_voice_note_and_operator_goes_out_as_one_request(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    note = tmp_path / "note.wav"
    note.write_bytes(wav_bytes(tone(0.5), 16000))
    settings = make_edge_settings(
        audio={"mode": "file", "file": str(note)},
        station={"operator": "j-doe", "adapter": "site-v2"},
    )
    seen = observe(settings.station.key.topic(TopicKind.REQUEST))
    photo = tmp_path / "P-1.jpg"
    photo.write_bytes(jpeg_bytes())
    with EdgeAgent(settings, quiet_console) as agent:
        receipt = agent.capture_file(photo, cmd=CaptureCommand(note="burr on left edge"))
        assert agent.publisher.wait_delivered([receipt.request_id], timeout=10)
    request = parse_request(seen.wait_for(1, 10)[0].payload)
    assert request.audio is not None and request.audio.content_type == "audio/wav"
    assert (request.operator, request.adapter, request.note) == (
        "j-doe",
        "site-v2",
        "burr on left edge",
    )
    assert json.loads(seen.messages[0].payload)["schema"] == "inspector.request/v1"


def test_restart_resends_what_was_spooled_with_the_same_request_ids(
    make_edge_settings: Callable[..., EdgeSettings],
    relay: TcpRelay,
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg_bytes())
    offline = make_edge_settings(broker={"port": relay.port})
    with EdgeAgent(offline, quiet_console) as agent:
        ids = [agent.capture_file(photo).request_id for _ in range(3)]
    online = make_edge_settings()
    seen = observe(online.station.key.topic(TopicKind.REQUEST))
    with EdgeAgent(online, quiet_console) as agent:
        assert agent.publisher.wait_delivered(ids, timeout=15)
        assert agent.stats().depth == 0
    got = seen.wait_for(3, 10)
    assert sorted(str(parse_request(m.payload).request_id) for m in got) == sorted(ids)


def test_spool_warns_near_its_budget_and_refuses_captures_beyond_it(
    make_edge_settings: Callable[..., EdgeSettings],
    relay: TcpRelay,
    quiet_console: Console,
    tmp_path: Path,
) -> None:
    photo = tmp_path / "noisy.png"
    photo.write_bytes(png_bytes(480, 400))  # random pixels: ~580 KB, ~770 KB in base64
    settings = make_edge_settings(
        broker={"port": relay.port}, spool={"max_bytes": 2**20, "warn_fraction": 0.6}
    )
    with EdgeAgent(settings, quiet_console) as agent:
        agent.capture_file(photo)
        assert "spool is 7" in screen(quiet_console)
        note = VoiceNote(tone(0.2), -10.0)
        agent.set_note(note)
        with pytest.raises(SpoolFull, match=r"capture of part noisy was refused"):
            agent.capture_file(photo)
        assert agent.stats().depth == 1
        assert agent.pending_note is note  # kept for the capture that does get through


def test_recorded_voice_note_goes_with_the_next_capture_only(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    settings = make_edge_settings(audio={"mode": "vad", "silence_timeout_s": 0.5})
    mic = ScriptedMicrophone(np.concatenate([silence(0.5), tone(1.0), silence(2.0)]))
    seen = observe(settings.station.key.topic(TopicKind.REQUEST))
    photo = tmp_path / "P-2.jpg"
    photo.write_bytes(jpeg_bytes())
    agent = EdgeAgent(settings, quiet_console, recorder=VoiceRecorder(settings.audio, mic))
    with agent:
        note = agent.record_note()
        assert note is not None and agent.pending_note is note
        with_note = agent.capture_file(photo).request_id
        without = agent.capture_file(photo).request_id
        assert agent.publisher.wait_delivered([with_note, without], timeout=10)
    got = {
        str(r.request_id): r for r in map(parse_request, (m.payload for m in seen.wait_for(2, 10)))
    }
    audio = got[with_note].audio
    assert audio is not None and got[without].audio is None
    info = sf.info(io.BytesIO(audio.data))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert info.frames == len(note.samples)
