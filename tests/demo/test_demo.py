"""`inspector demo`: the whole line as a user runs it, in a fresh working directory."""

from __future__ import annotations

import io
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa

from inspector.demo.notes import shipped_note, spoken_note
from inspector.demo.samples import (
    HEIGHT,
    WIDTH,
    PartKind,
    draw_part,
    voice_note_wav,
    write_photo,
)
from inspector.media import decode_audio
from inspector.mqtt import MqttTransport
from inspector.protocol import adapter_control_topic, status_topic
from inspector.settings import BrokerSettings, LimitSettings
from inspector.store import Store
from inspector.store.adapters import active_adapter, audit_trail
from inspector.store.models import Inspection, Verdict
from tests.fixtures.services import free_port
from tests.fixtures.worker import forget_session

DEMO_TIMEOUT_S = 90
# The loop also reviews, trains on the CPU and hot-swaps: at most 4 minutes on two cores.
LOOP_TIMEOUT_S = 600
# The loop's own defaults: a first batch of 36 drawn parts (24 to train on, 12 held out)
# and a fresh batch of 6, two of each kind.
LOOP_FIRST = 36
LOOP_FRESH = 6


def _env(**extra: str) -> dict[str, str]:
    # No config file and no INSPECTOR_* from the caller: the demo must run on built-in defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    # A wide, uncoloured console keeps the verdict table's columns whole in the captured output.
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _demo(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inspector", "demo", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )


class _Lines:
    """The lines a running process prints, read on a thread so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        """Block until a line containing `text` is printed (fail on timeout or end of output)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {text!r} within {timeout} s:\n{''.join(self.seen)}")
            if line is None:
                pytest.fail(f"output ended without {text!r}:\n{''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return

    def rest(self, timeout: float) -> str:
        """Everything printed, once the process has closed its output."""
        deadline = time.monotonic() + timeout
        while (line := self._lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def _forget_demo(broker: tuple[str, int], site: str) -> None:
    """Leave no session or retained status of a test's demo on the shared broker."""
    forget_session(broker, f"inspector-worker-{site}-worker")
    forget_session(broker, f"edge-{site}-line-1-station-1")
    settings = BrokerSettings(host=broker[0], port=broker[1], session_expiry_s=0)
    with MqttTransport(settings, f"cleanup-{site}", clean_start=True) as transport:
        if transport.wait_connected(10):
            # An empty retained message deletes the retained one.
            transport.publish_and_wait(status_topic(f"{site}-worker"), b"", timeout=10, retain=True)


def _forget_announcement(broker: tuple[str, int], site: str) -> None:
    """Delete the retained adapter announcement a loop run left for its site."""
    settings = BrokerSettings(host=broker[0], port=broker[1], session_expiry_s=0)
    with MqttTransport(settings, f"cleanup-control-{site}", clean_start=True) as transport:
        if transport.wait_connected(10):
            transport.publish_and_wait(adapter_control_topic(site), b"", timeout=10, retain=True)


def _stored(db: Path) -> list[tuple[str, str, str, str]]:
    store = Store(f"sqlite:///{db}", db.parent / "blobs")
    try:
        with store.db.read() as s:
            rows = s.execute(
                sa.select(
                    Inspection.site, Inspection.part_id, Inspection.request_id, Verdict.verdict
                ).join(Verdict, Verdict.inspection_id == Inspection.id)
            ).all()
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]
    finally:
        store.close()


def _demo_password_works(db: Path, password: str) -> bool:
    from inspector.review.passwords import verify_password
    from inspector.store import users

    store = Store(f"sqlite:///{db}", db.parent / "blobs")
    try:
        with store.db.read() as s:
            user = users.get_user(s, "demo")
    finally:
        store.close()
    return (
        user is not None
        and user.role == "reviewer"
        and verify_password(user.password_hash, password)
    )


@pytest.mark.slow
def test_demo_runs_the_line_and_lists_three_verdicts(
    tmp_path: Path, tiny_model_dir: Path, broker: tuple[str, int], unique: str
) -> None:
    try:
        done = _demo(
            tmp_path,
            "--count",
            "3",
            "--site",
            unique,
            "--start-timeout",
            "60",
            "--timeout",
            "30",
            INSPECTOR_MODEL__PATH=str(tiny_model_dir),
        )
    finally:
        _forget_demo(broker, unique)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out

    rows = _stored(tmp_path / "var" / "inspector.db")
    assert len(rows) == 3, rows
    assert {site for site, *_ in rows} == {unique}
    assert sorted(part.rsplit("-", 1)[1] for _, part, _, _ in rows) == ["dent", "ok", "scratch"]
    shown = done.stdout.split(f"$ inspector verdicts list --site {unique}", 1)
    assert len(shown) == 2, out
    live, listing = shown
    for _, part, request_id, verdict in rows:
        # Once from the edge display as it arrived, once in the final list.
        assert f"part {part}" in live
        assert request_id in listing and part in listing and verdict in listing
    assert "3 verdict(s)" in done.stderr
    flat = " ".join(out.split())
    assert "verdicts are random until a site adapter is trained" in flat
    # The review app ran beside the line, with a reviewer whose password was shown once.
    shown_password = re.search(
        r"review app: open http://127\.0\.0\.1:\d+/ and log in as demo with password (\S+)", flat
    )
    assert shown_password, out
    assert flat.count(shown_password[1]) == 1
    assert _demo_password_works(tmp_path / "var" / "inspector.db", shown_password[1])
    assert "review app stopped" in out
    assert len(list((tmp_path / "var" / "demo" / "parts").glob("*.jpg"))) == 3
    assert "with voice notes (" in live
    assert "received SIGTERM" in (tmp_path / "var" / "demo" / "worker.log").read_text()


@pytest.mark.slow
@pytest.mark.timeout(LOOP_TIMEOUT_S + 60)
def test_demo_loop_promotes_an_adapter_by_the_rule_and_it_judges_the_fresh_batch_right(
    tmp_path: Path, tiny_model_dir: Path, broker: tuple[str, int], unique: str
) -> None:
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "inspector", "demo", "--site", unique, "--loop"),
                *("--start-timeout", "120", "--timeout", "120"),
            ],
            cwd=tmp_path,
            env=_env(INSPECTOR_MODEL__PATH=str(tiny_model_dir)),
            capture_output=True,
            text=True,
            timeout=LOOP_TIMEOUT_S,
        )
    finally:
        _forget_demo(broker, unique)
        _forget_announcement(broker, unique)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    flat = " ".join(out.split())
    assert f"recorded {LOOP_FIRST} review(s)" in flat and "before (base)" in flat, out
    # It trains on exactly the reviews it recorded, and says what each figure counts.
    assert f"trained on the {LOOP_FIRST} review(s) recorded now" in flat
    assert "LoRA rank 32, 20 epochs" in flat
    assert "lean accuracy" in flat and "majority class" in flat and "verdict accuracy" in flat
    db = tmp_path / "var" / "inspector.db"
    store = Store(f"sqlite:///{db}", db.parent / "blobs")
    try:
        with store.db.read() as s:
            active = active_adapter(s, unique)
            trail = audit_trail(s, site=unique)
            rows = s.execute(
                sa.select(
                    Inspection.part_id, Verdict.verdict, Verdict.adapter, Verdict.adapter_version
                )
                .join(Verdict, Verdict.inspection_id == Inspection.id)
                .where(Inspection.site == unique)
                .order_by(Inspection.captured_at)
            ).all()
    finally:
        store.close()
    assert active is not None and f"{active.ref} promoted by the registry's rule" in flat
    # Promoted by the rule, not forced: the audit trail says so.
    [promotion] = [a for a in trail if a.action == "promote"]
    assert promotion.adapter == active.ref and not promotion.forced
    assert len(rows) == LOOP_FIRST + LOOP_FRESH
    # The first batch ran on the base; the fresh one on the promoted adapter, version named.
    assert all(version is None for *_, version in rows[:LOOP_FIRST])
    fresh = rows[LOOP_FIRST:]
    assert [(name, version) for _, _, name, version in fresh] == [
        (active.name, active.version)
    ] * LOOP_FRESH
    # At least 80 % of the fresh verdicts are what the drawn defect makes the part.
    drawn = ["PASS" if part.endswith("-ok") else "FAIL" for part, *_ in fresh]
    agree = sum(verdict == label for (_, verdict, *_), label in zip(fresh, drawn, strict=True))
    assert agree >= 0.8 * LOOP_FRESH, (fresh, out)
    assert f"{active.name}@{active.version}" in flat.split("fresh batch", 1)[1]


@pytest.mark.slow
def test_demo_keep_running_judges_dropped_photos_until_sigterm(
    tmp_path: Path, tiny_model_dir: Path, broker: tuple[str, int], unique: str
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inspector",
            "demo",
            "--count",
            "1",
            "--site",
            unique,
            "--keep-running",
            "--model",
            str(tiny_model_dir),
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = _Lines(proc)
    try:
        lines.wait_for("the line keeps running", DEMO_TIMEOUT_S)
        write_photo(tmp_path / "var" / "demo" / "inbox" / "EXTRA-7.jpg", draw_part("dent", 7))
        lines.wait_for("part EXTRA-7   confidence", 30)  # its verdict, on the edge display
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        _forget_demo(broker, unique)
    out = lines.rest(10)
    assert code == 0, out
    assert "edge agent stopped" in out and "EXTRA-7" in out.split("$ inspector verdicts list")[1]
    assert "2 verdict(s)" in out
    log = (tmp_path / "var" / "demo" / "worker.log").read_text()
    assert "received SIGTERM" in log and "stopped" in log


@pytest.mark.slow
def test_demo_without_a_local_broker_runs_its_own_on_mqtt_3_1_1(
    tmp_path: Path, tiny_model_dir: Path, unique: str
) -> None:
    port = free_port()  # nothing listens here: the demo starts its embedded broker on it
    done = _demo(
        tmp_path,
        "--count",
        "2",
        "--site",
        unique,
        "--start-timeout",
        "60",
        "--timeout",
        "60",
        INSPECTOR_BROKER__PORT=str(port),
        INSPECTOR_MODEL__PATH=str(tiny_model_dir),
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "embedded MQTT broker (amqtt)" in out and "MQTT 3.1.1" in out
    assert f"127.0.0.1:{port}" in out
    rows = _stored(tmp_path / "var" / "inspector.db")
    assert sorted(part.rsplit("-", 1)[1] for _, part, _, _ in rows) == ["ok", "scratch"]
    assert "2 verdict(s)" in done.stderr  # the count goes to stderr, the table to stdout
    # The embedded broker stopped with the demo: the port is free again.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_demo_with_a_configured_remote_broker_down_says_so(tmp_path: Path) -> None:
    port = free_port()
    # Not this host's default address: the demo must not quietly run a broker of its own.
    done = _demo(
        tmp_path,
        "--count",
        "1",
        INSPECTOR_BROKER__HOST="127.0.0.2",
        INSPECTOR_BROKER__PORT=str(port),
    )
    assert done.returncode == 1
    assert f"127.0.0.2:{port}" in done.stderr and "mosquitto -d" in done.stderr
    assert not (tmp_path / "var" / "models").exists(), "nothing should be built without a broker"


def test_demo_photos_show_the_drawn_defect_on_the_part_only() -> None:
    ok, scratch, dent = (draw_part(kind, seed=7) for kind in ("ok", "scratch", "dent"))
    assert ok.shape == (HEIGHT, WIDTH, 3) == (480, 640, 3)
    for damaged in (scratch, dent):
        changed = np.abs(damaged.astype(int) - ok.astype(int)).max(axis=2) > 12
        ys, xs = np.nonzero(changed)
        assert len(ys) > 150, "the defect must be visible"
        # The same seed places the bracket identically: the damage lies within its outline
        # (x 150-490, y 110-390, shifted by at most 25 px), never on the belt.
        top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
        assert top >= 85 and bottom <= 415 and left >= 125 and right <= 515


def test_demo_voice_note_is_a_16khz_mono_wav_with_pauses() -> None:
    samples, rate = sf.read(io.BytesIO(voice_note_wav(2.0)))
    assert rate == 16000 and samples.ndim == 1 and len(samples) == 32000
    loud = np.abs(samples).reshape(-1, 400).max(axis=1) > 0.05  # 25 ms frames
    assert 0.3 < loud.mean() < 0.9, "speech-like: syllables with gaps, not a steady tone"


@pytest.mark.parametrize("kind", ["ok", "scratch", "dent"])
def test_demo_shipped_voice_notes_are_speech_a_station_would_send(kind: PartKind) -> None:
    wav = shipped_note(kind)
    samples, rate = sf.read(io.BytesIO(wav))
    assert rate == 16000 and samples.ndim == 1 and len(samples) == 5 * rate
    assert np.abs(samples[: 2 * rate]).max() > 0.1, "speech, not silence"
    decoded = decode_audio(wav, "audio/wav", LimitSettings())  # what a worker accepts
    assert decoded is not None


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_demo_speaks_the_same_note_for_every_part_of_a_kind_with_espeak_ng() -> None:
    # The same every run, like the drawn parts: the loop's training must not depend on
    # whether the machine has espeak-ng (a note naming each part number once made the
    # tiny model learn nothing from a batch it learns from with the shipped notes).
    first, source = spoken_note("dent")
    again, _ = spoken_note("dent")
    other, _ = spoken_note("scratch")
    assert source == "espeak-ng" and first == again and first != other
    info = sf.info(io.BytesIO(first))
    assert info.samplerate == 16000 and info.frames == sf.info(io.BytesIO(other)).frames
    assert spoken_note("dent", use_tts=False) == (shipped_note("dent"), "shipped")
