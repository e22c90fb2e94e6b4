"""Broker TLS, credentials and ACLs, against a private Mosquitto the test starts and configures."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from tests.fixtures.edge import jpeg_bytes, screen, wait_until
from tests.fixtures.tls import PrivateBroker, make_certificates, run_tool

_TOOLS = ("mosquitto", "mosquitto_passwd", "openssl")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in _TOOLS), reason="needs " + ", ".join(_TOOLS)
)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """TLS on a free port, user `station` / `s3cret` only, allowed every topic at first."""
    make_certificates(tmp_path)
    run_tool("mosquitto_passwd", "-c", "-b", tmp_path / "passwd", "station", "s3cret")
    acl = tmp_path / "acl"
    acl.write_text("user station\ntopic readwrite #\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"""
listener {port} 127.0.0.1
cafile {tmp_path / "ca.crt"}
certfile {tmp_path / "server.crt"}
keyfile {tmp_path / "server.key"}
allow_anonymous false
password_file {tmp_path / "passwd"}
acl_file {acl}
persistence false
""")
    if os.geteuid() == 0:
        # Run as root, Mosquitto would switch to the `mosquitto` user, who cannot read tmp_path.
        conf.write_text(conf.read_text() + "user root\n")
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_until(listening, 10), (tmp_path / "mosquitto.log").read_text()
        yield PrivateBroker(port, tmp_path / "ca.crt", acl, proc)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _secure(
    make: Callable[..., EdgeSettings], broker: PrivateBroker, password: str, **spool: object
) -> EdgeSettings:
    tls = {"enabled": True, "ca_certs": str(broker.ca)}
    return make(
        broker={"port": broker.port, "tls": tls, "username": "station", "password": password},
        spool=spool,
    )


def test_agent_publishes_over_tls_with_username_and_password(
    tls_broker: PrivateBroker,
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    tmp_path: Path,
) -> None:
    settings = _secure(make_edge_settings, tls_broker, "s3cret")
    photo = tmp_path / "P-1.jpg"
    photo.write_bytes(jpeg_bytes())
    with EdgeAgent(settings, quiet_console) as agent:
        assert agent.transport.wait_connected(10)
        receipt = agent.capture_file(photo)
        assert agent.publisher.wait_delivered([receipt.request_id], timeout=10)


def test_wrong_password_keeps_captures_spooled(
    tls_broker: PrivateBroker,
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    tmp_path: Path,
) -> None:
    settings = _secure(make_edge_settings, tls_broker, "wrong")
    photo = tmp_path / "P-2.jpg"
    photo.write_bytes(jpeg_bytes())
    with EdgeAgent(settings, quiet_console) as agent:
        receipt = agent.capture_file(photo)
        assert not agent.publisher.wait_delivered([receipt.request_id], timeout=1.5)
        assert not agent.transport.connected
        assert agent.stats().depth == 1
    assert "Not authorized" in screen(quiet_console)


def test_publish_refused_by_the_acl_stays_spooled_and_is_retried_until_allowed(
    tls_broker: PrivateBroker,
    make_edge_settings: Callable[..., EdgeSettings],
    quiet_console: Console,
    tmp_path: Path,
) -> None:
    settings = _secure(make_edge_settings, tls_broker, "s3cret", retry_max_s=1.0)
    tls_broker.set_acl("user station\ntopic read #\n")
    photo = tmp_path / "P-3.jpg"
    photo.write_bytes(jpeg_bytes())
    with EdgeAgent(settings, quiet_console) as agent:
        receipt = agent.capture_file(photo)
        # The broker answers PUBACK "Not authorized": the capture must stay, with the reason.
        assert wait_until(lambda: agent.stats().last_error == "Not authorized", 10)
        assert agent.stats().depth == 1
        tls_broker.set_acl("user station\ntopic readwrite #\n")
        assert agent.publisher.wait_delivered([receipt.request_id], timeout=15)
        assert agent.stats().depth == 0
    assert "broker refused request" in screen(quiet_console)
