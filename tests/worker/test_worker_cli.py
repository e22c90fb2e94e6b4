"""`inspector submit` and the worker's Prometheus endpoint, as an operator uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from inspector.worker import Worker
from tests.core.helpers import jpeg, wav
from tests.fixtures.services import free_port
from tests.fixtures.worker import Observer, make_settings


def _submit(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inspector", "--config", str(config), "submit", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "COLUMNS": "120"},
    )


def _config(tmp_path: Path, broker: tuple[str, int]) -> Path:
    cfg = tmp_path / "client.toml"
    cfg.write_text(f'[broker]\nhost = "{broker[0]}"\nport = {broker[1]}\n')
    return cfg


def test_submit_prints_the_verdict_and_metrics_count_it(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    port = free_port()
    worker = start_worker(make_settings(unique, sqlite_url, tmp_path, broker, metrics_port=port))
    photo, note = tmp_path / "p.jpg", tmp_path / "n.wav"
    photo.write_bytes(jpeg(64, 48))
    note.write_bytes(wav(seconds=1.0, rate=44_100, channels=2))
    out = _submit(
        _config(tmp_path, broker),
        "--image",
        str(photo),
        "--audio",
        str(note),
        "--site",
        unique,
        "--line",
        "l1",
        "--station",
        "s1",
        "--part-id",
        "P-7",
        "--note",
        "small burr",
        "--timeout",
        "60",
    )
    assert out.returncode == 0, out.stderr
    verdict = json.loads(out.stdout.strip().splitlines()[-1])
    assert verdict["part_id"] == "P-7" and verdict["verdict"] in ("PASS", "FAIL", "REVIEW")
    assert verdict["worker_id"] == worker.worker_id
    # Verdict first: the command waits for the rationale that follows and prints it merged in.
    assert verdict["rationale_state"] == "produced" and verdict["rationale"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'inspector_requests_total{outcome="judged"} 1.0' in metrics
    site_verdict = f'inspector_verdicts_total{{site="{unique}",verdict="{verdict["verdict"]}"}} 1.0'
    assert site_verdict in metrics
    assert "inspector_batch_size_count 1.0" in metrics
    assert "inspector_end_to_end_seconds_bucket" in metrics
    assert 'inspector_rationales_total{state="produced"} 1.0' in metrics

    tiny = tmp_path / "tiny.jpg"
    tiny.write_bytes(jpeg(4, 4))
    refused = _submit(
        _config(tmp_path, broker),
        "--image",
        str(tiny),
        "--site",
        unique,
        "--line",
        "l1",
        "--station",
        "s1",
        "--timeout",
        "60",
    )
    assert refused.returncode == 3, refused.stderr
    assert json.loads(refused.stdout.strip().splitlines()[-1])["code"] == "image.too_small"


def test_submit_refuses_bad_files_before_publishing(
    tmp_path: Path, broker: tuple[str, int]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    out = _submit(
        _config(tmp_path, broker),
        "--image",
        str(bad),
        "--site",
        "x",
        "--line",
        "l",
        "--station",
        "s",
    )
    assert out.returncode == 2 and "image.undecodable" in out.stderr
    missing = _submit(
        _config(tmp_path, broker),
        "--image",
        str(tmp_path / "nope.jpg"),
        "--site",
        "x",
        "--line",
        "l",
        "--station",
        "s",
    )
    assert missing.returncode == 2 and "cannot read photo" in missing.stderr
    slug = _submit(
        _config(tmp_path, broker),
        "--image",
        str(bad),
        "--site",
        "Bad Site",
        "--line",
        "l",
        "--station",
        "s",
    )
    assert slug.returncode == 2


def test_submit_times_out_clearly_without_a_worker(
    tmp_path: Path, broker: tuple[str, int], unique: str
) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg())
    out = _submit(
        _config(tmp_path, broker),
        "--image",
        str(photo),
        "--site",
        unique,
        "--line",
        "l1",
        "--station",
        "s1",
        "--timeout",
        "1",
    )
    assert out.returncode == 1 and "no verdict" in out.stderr
