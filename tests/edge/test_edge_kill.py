"""kill -9 with a non-empty spool, restart: every capture is delivered, none is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from edge.spool import Spool, agent_running, read_stats
from inspector.protocol import StationKey, TopicKind, parse_request
from tests.fixtures.edge import BrokerObserver, TcpRelay, jpeg_bytes, wait_until

REPO = Path(__file__).resolve().parents[2]


def _config(path: Path, unique: str, port: int, inbox: Path, spool: Path) -> Path:
    path.write_text(f"""
[station]
site = "{unique}"
line = "l1"
station = "s1"
client_id = "edge-{unique}"

[broker]
host = "127.0.0.1"
port = {port}
connect_timeout_s = 2
session_expiry_s = 120

[folder]
path = "{inbox}"
poll_s = 0.1
settle_s = 0.1

[triggers]
keyboard = false
http_port = 0
mqtt = false

[spool]
path = "{spool}"
""")
    return path


def _agent(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(config), "--no-keyboard"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_kill_9_with_a_full_spool_then_restart_loses_nothing(
    tmp_path: Path,
    unique: str,
    relay: TcpRelay,
    observe: Callable[[str], BrokerObserver],
) -> None:
    inbox, spool_path = tmp_path / "inbox", tmp_path / "spool.db"
    inbox.mkdir()
    config = _config(tmp_path / "edge.toml", unique, relay.port, inbox, spool_path)
    seen = observe(StationKey(unique, "l1", "s1").topic(TopicKind.REQUEST))
    agent = _agent(config)
    try:
        for i in range(8):
            (inbox / f"k-{i}.jpg").write_bytes(jpeg_bytes(seed=i))
        # The broker is unreachable: the captures pile up in the spool.
        assert wait_until(
            lambda: (st := read_stats(spool_path, 2**30)) is not None and st.depth == 8, 30
        ), agent.stdout
        assert agent_running(spool_path)
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        assert not agent_running(spool_path)  # the kernel dropped the dead agent's lock
    finally:
        if agent.poll() is None:
            agent.kill()
    spool = Spool(spool_path)
    spooled = spool.request_ids()
    spool.close()
    assert len(spooled) == 8 and seen.messages == []

    relay.start()
    again = _agent(config)
    try:
        got = seen.wait_for(8, 30)
        assert wait_until(
            lambda: (st := read_stats(spool_path, 2**30)) is not None and st.depth == 0, 10
        )
        again.send_signal(signal.SIGTERM)
        out, _ = again.communicate(timeout=15)
    finally:
        if again.poll() is None:
            again.kill()
    assert sorted(str(parse_request(m.payload).request_id) for m in got) == sorted(spooled)
    assert b"8 unsent capture(s) in the spool" in out
    assert again.returncode == 0, out.decode(errors="replace")
