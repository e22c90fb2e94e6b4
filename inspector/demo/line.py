"""The demo line: a worker and one station's edge agent on the local broker, fed drawn parts.

Everything runs on the settings' defaults (SQLite in var/, the broker on 127.0.0.1, the model
in var/models/tiny); only the demo site's names, folders and worker identity are its own, so
the demo worker never takes another site's requests and no other worker takes the demo's.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
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
from inspector.errors import DemoFailed, InspectorError
from inspector.protocol import utcnow
from inspector.settings import BrokerSettings, Settings
from inspector.store import upgrade

from .broker import DemoBroker, choose_broker
from .model import ensure_model
from .notes import spoken_note
from .review import DEMO_REVIEWER, ReviewProcess, demo_reviewer, review_port
from .samples import PartKind, draw_part, kind_for, voice_note_wav, write_photo
from .worker_process import WorkerProcess

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
    loop: bool = False  # review the batch, train, promote, hot-swap, send a fresh batch
    fresh: int = 6  # parts of the loop's fresh batch
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
        self.request_ids: dict[str, str] = {}
        self._cond = threading.Condition()

    def __call__(self, outcome: Outcome) -> None:
        """Board listener: runs on the MQTT thread."""
        if outcome.kind not in _FINAL or outcome.part_id not in self.awaited:
            return
        with self._cond:
            self.outcomes.setdefault(outcome.part_id, outcome.kind)
            self.request_ids.setdefault(outcome.part_id, outcome.request_id)
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> bool:
        """Block until every awaited part has an outcome, or `timeout_s`."""
        with self._cond:
            return self._cond.wait_for(lambda: self.awaited <= self.outcomes.keys(), timeout_s)

    def summary(self) -> str:
        """E.g. '2 FAIL, 1 PASS'."""
        counts = Counter(self.outcomes.values())
        return ", ".join(f"{n} {kind}" for kind, n in counts.most_common())


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


def broker_env(broker: BrokerSettings) -> dict[str, str]:
    """Where the demo worker connects: the broker the demo chose (maybe its embedded one)."""
    return {
        "INSPECTOR_BROKER__HOST": broker.host,
        "INSPECTOR_BROKER__PORT": str(broker.port),
        "INSPECTOR_BROKER__PROTOCOL": broker.protocol,
    }


def part_ids(count: int) -> list[str]:
    """Part ids for one run: unique per run, naming the defect drawn on each part."""
    stamp = utcnow().strftime("%H%M%S")
    return [f"P{stamp}-{i + 1:02d}-{kind_for(i)}" for i in range(count)]


# Each run draws the same parts (the first batch from seed 0, the loop's fresh batch from
# FRESH_SEED), so what the demo shows is reproducible. On the tiny model's random weights
# another set of parts can leave one defective holdout part passing after training, and
# the registry then rightly refuses the adapter.
FIRST_SEED = 0
FRESH_SEED = 100_000


def feed_parts(
    agent: EdgeAgent, folder: Path, parts: list[str], console: Console, seed: int
) -> None:
    """Draw each part (part i from `seed` + i), and hand it to the station with its note."""
    folder.mkdir(parents=True, exist_ok=True)
    sources: set[str] = set()
    for i, part in enumerate(parts):
        kind = kind_for(i)
        photo = write_photo(folder / f"{part}.jpg", draw_part(kind, seed + i))
        note, source = spoken_note(kind)
        sources.add(source)
        agent.capture_file(photo, audio_wav=note)
    spoken = "espeak-ng" if sources == {"espeak-ng"} else "notes shipped with Inspector"
    console.print(
        f"fed {len(parts)} drawn part(s) from [bold]{folder}[/] with voice notes ({spoken})"
    )


def start_broker(settings: Settings, console: Console) -> DemoBroker:
    """The configured (local) broker, or an embedded one where it should be, said plainly."""
    broker = choose_broker(settings.broker)
    where = f"{broker.settings.host}:{broker.settings.port}"
    if broker.embedded is None:
        console.print(f"broker: the MQTT broker on {where} (MQTT 5)")
    else:
        console.print(
            f"broker: nothing answers on {where}, so the demo runs an embedded MQTT broker "
            "(amqtt) there. It speaks MQTT 3.1.1 only: for this run every client uses 3.1.1, "
            "with one worker on a plain subscription. Start Mosquitto (`mosquitto -d`) for "
            "MQTT 5 as in production."
        )
    return broker


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> None:
    """Run the whole line once (or until interrupted with keep_running), then list verdicts."""
    broker = start_broker(settings, console)
    try:
        _run_line(settings.model_copy(update={"broker": broker.settings}), options, console)
    finally:
        broker.stop()


def _run_line(settings: Settings, options: DemoOptions, console: Console) -> None:
    model = ensure_model(options.model or settings.model.path, console)
    # The loop trains on the model the worker serves.
    settings = settings.model_copy(
        update={"model": settings.model.model_copy(update={"path": model})}
    )
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
        {**worker_env(options, model), **broker_env(settings.broker)},
    )
    console.print(
        f"starting worker [bold]{options.worker_id}[/] for site {options.site} "
        f"(log {worker.log_path})"
    )
    review = start_review(settings, options, console)
    try:
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
    finally:
        review.stop()
        console.print("review app stopped")
    if code != 0:
        raise DemoFailed(
            f"the worker exited with code {code}; its log ends with:\n{worker.log_tail()}"
        )
    show_verdicts(options, started, console)


def start_review(settings: Settings, options: DemoOptions, console: Console) -> ReviewProcess:
    """The review app on this machine, with a demo reviewer whose password is shown once."""
    name, password = demo_reviewer(settings)
    review = ReviewProcess(
        review_port(settings.review.port),
        options.workdir / "review.log",
        options.config,
        broker_env(settings.broker),
    )
    console.print(f"starting the review app (log {review.log_path})")
    review.start(options.start_timeout_s)
    console.print(
        f"[bold]review app:[/] open [bold]{review.url}[/] and log in as [bold]{name}[/] "
        f"with password [bold]{password}[/] (shown only now; a new one each run)"
    )
    return review


def _run_station(
    settings: Settings,
    options: DemoOptions,
    inbox: Path,
    note: Path,
    worker: WorkerProcess,
    console: Console,
) -> None:
    agent = EdgeAgent(edge_settings(settings, options, inbox, note), console)
    try:
        agent.start()
        console.print(
            f"[bold]edge agent[/] {options.site}/{options.line}/{options.station} watching {inbox}"
        )
        since = utcnow()
        first = judge_batch(agent, options, worker, options.count, console)
        if options.loop:
            run_loop(settings, options, agent, worker, first, since, console)
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


def judge_batch(
    agent: EdgeAgent,
    options: DemoOptions,
    worker: WorkerProcess,
    count: int,
    console: Console,
    seed: int = FIRST_SEED,
) -> dict[str, tuple[str, PartKind]]:
    """Feed `count` drawn parts and wait for each one's verdict: part id → (request id, kind)."""
    parts = part_ids(count)
    tally = OutcomeTally(parts)
    agent.board.add_listener(tally)
    feed_parts(agent, options.workdir / "parts", parts, console, seed)
    if not tally.wait(options.verdict_timeout_s):
        missing = sorted(tally.awaited - tally.outcomes.keys())
        raise DemoFailed(
            f"no verdict within {options.verdict_timeout_s:g} s for {', '.join(missing)}; "
            f"the worker log ({worker.log_path}) ends with:\n{worker.log_tail()}"
        )
    console.print(f"[bold]{len(parts)} verdict(s):[/] {tally.summary()}")
    refused = sorted(p for p, kind in tally.outcomes.items() if kind == "REJECTED")
    if refused:
        # Drawn photos and the generated note are always valid: a refusal is a fault.
        raise DemoFailed(
            f"the worker rejected {', '.join(refused)} (reasons above; "
            f"worker log {worker.log_path})"
        )
    return {p: (tally.request_ids[p], kind_for(i)) for i, p in enumerate(parts)}


def run_loop(
    settings: Settings,
    options: DemoOptions,
    agent: EdgeAgent,
    worker: WorkerProcess,
    first: dict[str, tuple[str, PartKind]],
    since: datetime,
    console: Console,
) -> None:
    """Review the first batch, train and promote a site adapter, then judge a fresh batch."""
    from inspector.control import announce
    from inspector.store import Store

    from .loop import fresh_verdicts, record_reviews, show_fresh, train_and_promote, wait_serving

    store = Store.from_settings(settings.store)
    try:
        reviewed = record_reviews(store, first)
        console.print(
            f"recorded {reviewed} review(s) as [bold]{DEMO_REVIEWER}[/]: each drawn defect "
            "fails its part (FAIL with that defect), a clean part passes, as a reviewer "
            "judging the photo would"
        )
        promoted = train_and_promote(store, settings, options.site, reviewed, since, console)
        announce(settings.broker, options.site, promoted.record.adapter)
        console.print(f"announced {promoted.ref} on the control topic; waiting for the worker")
        wait_serving(worker, options.site, promoted, options.start_timeout_s)
        console.print(f"worker serves {promoted.ref}; sending a fresh batch")
        fresh = judge_batch(agent, options, worker, options.fresh, console, FRESH_SEED)
        show_fresh(fresh_verdicts(store, fresh), fresh, console)
    finally:
        store.close()


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
        raise DemoFailed(f"`inspector verdicts list` exited with code {done.returncode}")
