"""The station terminal on a real pseudo-terminal: r records a note, space captures, q quits."""

from __future__ import annotations

import os
import pty
import termios
import threading
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from edge.agent import EdgeAgent
from edge.audio import VoiceRecorder
from edge.config import EdgeSettings
from edge.terminal import StationTerminal
from edge.triggers import KeyReader
from inspector.protocol import TopicKind, parse_request
from tests.fixtures.edge import (
    BrokerObserver,
    ScriptedMicrophone,
    screen,
    tone,
    wait_until,
    write_video,
)


def test_keys_record_a_note_capture_with_it_and_quit(
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    observe: Callable[[str], BrokerObserver],
    tmp_path: Path,
) -> None:
    video = write_video(tmp_path / "cam.avi", frames=3)
    settings = make_edge_settings(
        camera={"source": str(video)}, audio={"mode": "fixed", "fixed_s": 0.5}
    )
    seen = observe(settings.station.key.topic(TopicKind.REQUEST))
    mic = ScriptedMicrophone(tone(2.0))
    agent = EdgeAgent(settings, quiet_console, recorder=VoiceRecorder(settings.audio, mic))
    master, slave = pty.openpty()
    try:
        with agent:
            terminal = StationTerminal(agent, quiet_console)
            keys = threading.Thread(target=terminal.run, args=(KeyReader(slave),), daemon=True)
            keys.start()
            # Entering cbreak mode flushes pending input: type only once the reader is ready.
            assert wait_until(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON, 10)
            os.write(master, b"r")
            # The recorder runs on its own thread; only its result is visible from here.
            assert wait_until(lambda: agent.pending_note is not None, 10)
            os.write(master, b" ")
            got = seen.wait_for(1, 10)
            os.write(master, b"q")
            keys.join(10)
            assert not keys.is_alive()
    finally:
        os.close(master)
        os.close(slave)
    request = parse_request(got[0].payload)
    assert request.audio is not None and request.images[0].content_type == "image/jpeg"
    assert agent.pending_note is None
    assert "voice note 0.5 s" in screen(quiet_console)
