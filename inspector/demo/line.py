"""The demo line: a worker and one station's edge agent on the local broker, fed drawn parts.

Everything runs on the settings' defaults (SQLite in var/, the broker on 127.0.0.1, the model
in var/models/tiny); only the demo site's names, folders and worker identity are its own, so
the demo worker never takes another site's requests and no other worker takes the demo's.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console

from edge.agent import EdgeAgent
from edge.config import (
    AudioSettings,
    DisplaySettings,
    EdgeSettings,
    FolderSettings,
    SpoolSettings,
    StationSettings,
    TriggerSettings,
)
from edge.display import Outcome
from inspector.errors import InspectorError
from inspector.protocol import utcnow
from inspector.settings import BrokerSettings, Settings
from inspector.store import upgrade

from .model import ensure_model
from .samples import draw_part, kind_for, voice_note_wav, write_photo
from .worker_process import WorkerProcess

BROKER_PROBE_S = 3.0
_FINAL = frozenset({"PASS", "FAIL", "REVIEW", "REJECTED"})


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does and where it keeps its files."""

    count: int = 3
    site: str = "demo"
    line: str = "line-1"
    station: str = "station-1"
    workdir: Path = Path("var/demo")
    model: Path | None = None
    config: Path | None = None
    keep_running: bool = False
    start_timeout_s: float = 300.0
    verdict_timeout_s: float = 180.0
    stop_timeout_s: float = 60.0

    @property
    def worker_id(self) -> str:
        """The demo worker's stable id (and so its MQTT session)."""
        return f"{self.site}-worker"

    @property
    def group(self) -> str:
        """A shared-subscription group of the demo's own."""
        return f"{self.site}-workers"


class OutcomeTally:
    """Collects the first final outcome (verdict or rejection) of each awaited part."""

    def __init__(self, parts: Iterable[str]) -> None:
        self.awaited = set(parts)
        self.outcomes: dict[str, str] = {}
        self._cond = threading.Condition()

    def __call__(self, outcome: Outcome) -> None:
        """Board listener: runs on the MQTT thread."""
        if outcome.kind not in _FINAL or outcome.part_id not in self.awaited:
            return
        with self._cond:
            self.outcomes.setdefault(outcome.part_id, outcome.kind)
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> bool:
        """Block until every awaited part has an outcome, or `timeout_s`."""
        with self._cond:
            return self._cond.wait_for(lambda: self.awaited <= self.outcomes.keys(), timeout_s)

    def summary(self) -> str:
        """E.g. '2 FAIL, 1 PASS'."""
        counts = Counter(self.outcomes.values())
        return ", ".join(f"{n} {kind}" for kind, n in counts.most_common())


def check_broker(broker: BrokerSettings) -> None:
    """Fail with what to do when nothing answers on the broker's address."""
    try:
        with socket.create_connection((broker.host, broker.port), timeout=BROKER_PROBE_S):
            return
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
    raise InspectorError(
        f"no MQTT broker answers on {broker.host}:{broker.port} ({reason}). Start the local "
        "Mosquitto with `mosquitto -d` (or point broker.host / broker.port, e.g. "
        "INSPECTOR_BROKER__HOST, at a running broker) and run the demo again."
    )


def edge_settings(
    settings: Settings, options: DemoOptions, inbox: Path, note: Path
) -> EdgeSettings:
    """The demo station: watched folder, a voice note with every photo, no keyboard or HTTP."""
    return EdgeSettings(
        station=StationSettings(site=options.site, line=options.line, station=options.station),
        broker=settings.broker,
        folder=FolderSettings(path=inbox, poll_s=0.2, settle_s=0.2),
        audio=AudioSettings(mode="file", file=note),
        # Off: port 8750 and the trigger topic may belong to a real station's agent on this host.
        triggers=TriggerSettings(keyboard=False, http_port=None, mqtt=False),
        spool=SpoolSettings(path=options.workdir / "edge-spool.db"),
        display=DisplaySettings(verdict_timeout_s=options.verdict_timeout_s),
    )


def worker_env(options: DemoOptions, model: Path) -> dict[str, str]:
    """Settings the demo worker gets on top of the user's file, as INSPECTOR_* variables."""
    return {
        "INSPECTOR_MODEL__PATH": str(model.resolve()),
        "INSPECTOR_WORKER__WORKER_ID": options.worker_id,
        "INSPECTOR_WORKER__GROUP": options.group,
        "INSPECTOR_WORKER__SITES": f'["{options.site}"]',
        # A production worker on this host may hold the metrics port.
        "INSPECTOR_WORKER__METRICS_PORT": "0",
    }


def part_ids(count: int) -> list[str]:
    """Part ids for one run: unique per run, naming the defect drawn on each part."""
    stamp = utcnow().strftime("%H%M%S")
    return [f"P{stamp}-{i + 1:02d}-{kind_for(i)}" for i in range(count)]


def drop_photos(inbox: Path, parts: list[str], console: Console) -> None:
    """Write one drawn part per id into the watched folder."""
    seed = time.time_ns() % 2**32
    for i, part in enumerate(parts):
        write_photo(inbox / f"{part}.jpg", draw_part(kind_for(i), seed + i))
    console.print(f"dropped {len(parts)} photo(s) into [bold]{inbox}[/]: {', '.join(parts)}")


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> None:
    """Run the whole line once (or until interrupted with keep_running), then list verdicts."""
    check_broker(settings.broker)
    model = ensure_model(options.model or settings.model.path, console)
    revision = upgrade(settings.store.url)
    console.print(f"database at revision {revision}")
    inbox = options.workdir / "inbox"
    note = options.workdir / "note.wav"
    inbox.mkdir(parents=True, exist_ok=True)
    note.write_bytes(voice_note_wav())
    started = utcnow()

    worker = WorkerProcess(
        options.worker_id,
        settings.broker,
        options.workdir / "worker.log",
        options.config,
        worker_env(options, model),
    )
    console.print(
        f"starting worker [bold]{options.worker_id}[/] for site {options.site} "
        f"(log {worker.log_path})"
    )
    worker.start()
    try:
        status = worker.wait_online(options.start_timeout_s)
        console.print(f"worker online (model {status.model})")
        _run_station(settings, options, inbox, note, worker, console)
    except BaseException:
        console.print("stopping the worker (SIGTERM)")
        # The first failure is the one to report; a slow stop now would only hide it.
        with contextlib.suppress(InspectorError):
            worker.stop(options.stop_timeout_s)
        raise
    console.print("stopping the worker (SIGTERM)")
    code = worker.stop(options.stop_timeout_s)
    if code != 0:
        raise InspectorError(
            f"the worker exited with code {code}; its log ends with:\n{worker.log_tail()}"
        )
    show_verdicts(options, started, console)


def _run_station(
    settings: Settings,
    options: DemoOptions,
    inbox: Path,
    note: Path,
    worker: WorkerProcess,
    console: Console,
) -> None:
    agent = EdgeAgent(edge_settings(settings, options, inbox, note), console)
    parts = part_ids(options.count)
    tally = OutcomeTally(parts)
    agent.board.add_listener(tally)
    try:
        agent.start()
        console.print(
            f"[bold]edge agent[/] {options.site}/{options.line}/{options.station} watching {inbox}"
        )
        drop_photos(inbox, parts, console)
        if not tally.wait(options.verdict_timeout_s):
            missing = sorted(tally.awaited - tally.outcomes.keys())
            raise InspectorError(
                f"no verdict within {options.verdict_timeout_s:g} s for {', '.join(missing)}; "
                f"the worker log ({worker.log_path}) ends with:\n{worker.log_tail()}"
            )
        console.print(f"[bold]{len(parts)} verdict(s):[/] {tally.summary()}")
        refused = sorted(p for p, kind in tally.outcomes.items() if kind == "REJECTED")
        if refused:
            # Drawn photos and the generated note are always valid: a refusal is a fault.
            raise InspectorError(
                f"the worker rejected {', '.join(refused)} (reasons above; "
                f"worker log {worker.log_path})"
            )
        if options.keep_running:
            console.print(
                f"the line keeps running: drop photos into [bold]{inbox}[/] for more "
                "verdicts; Ctrl-C stops it"
            )
            try:
                agent.wait()
            except KeyboardInterrupt:
                console.print("stopping")
    finally:
        agent.stop()
        console.print("edge agent stopped")


def show_verdicts(options: DemoOptions, since: datetime, console: Console) -> None:
    """Print `inspector verdicts list` for the demo station, as a user would run it."""
    root = ["--config", str(options.config)] if options.config is not None else []
    args = [
        "verdicts",
        "list",
        "--site",
        options.site,
        "--line",
        options.line,
        "--station",
        options.station,
        "--since",
        since.isoformat(timespec="seconds"),
    ]
    console.print(f"\n$ inspector {' '.join(args)}")
    console.file.flush()
    done = subprocess.run(
        [sys.executable, "-m", "inspector", *root, *args], timeout=60, check=False
    )
    if done.returncode != 0:
        raise InspectorError(f"`inspector verdicts list` exited with code {done.returncode}")
