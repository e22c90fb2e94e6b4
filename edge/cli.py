"""`inspector edge …`: run the station agent, show its spool, send photo files once."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from inspector.errors import ConfigError, InspectorError
from inspector.safetext import terminal

from .config import DEFAULT_EDGE_CONFIG, EdgeSettings, load_edge_settings

console = Console()
err_console = Console(stderr=True)

EdgeConfig = Annotated[
    Path,
    typer.Option("--config", "-c", help="Edge agent TOML file.", envvar="INSPECTOR_EDGE_CONFIG"),
]

app = typer.Typer(
    help="The line-station agent.", no_args_is_help=True, pretty_exceptions_enable=False
)


def _settings(config: Path) -> EdgeSettings:
    try:
        return load_edge_settings(config)
    except ConfigError as exc:
        err_console.print(f"[bold red]configuration error[/]: {terminal(exc.message)}")
        raise typer.Exit(2) from None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.command("run")
def run(
    config: EdgeConfig = DEFAULT_EDGE_CONFIG,
    keyboard: Annotated[
        bool, typer.Option(help="Read keys in the terminal (when it is one).")
    ] = True,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log connection events.")
    ] = False,
    panels: Annotated[
        bool,
        typer.Option(
            "--panels",
            help="Show each verdict as a large panel (block letters, the whole rationale) "
            "instead of one line.",
        ),
    ] = False,
) -> None:
    """Run the station agent until q, Ctrl-C or SIGTERM; unsent captures stay spooled."""
    from .agent import EdgeAgent
    from .terminal import StationTerminal
    from .triggers import KeyReader

    settings = _settings(config)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        agent = EdgeAgent(settings, console, panels=panels)
    except InspectorError as exc:
        err_console.print(f"[bold red]cannot start:[/] {terminal(exc.message)}")
        raise typer.Exit(1) from None
    try:
        agent.start()
        s = settings.station
        console.print(
            f"[bold]edge agent[/] {s.site}/{s.line}/{s.station} → "
            f"{settings.broker.host}:{settings.broker.port} as {s.mqtt_client_id}"
        )
        if agent.http is not None:
            console.print(
                f"HTTP trigger: POST http://{settings.triggers.http_host}:{agent.http.port}/capture"
            )
        if agent.folder is not None:
            console.print(f"watching {agent.folder.root} for photos")
        if keyboard and settings.triggers.keyboard and KeyReader.available():
            StationTerminal(agent, console).run(KeyReader())
        else:
            while not agent.wait(1.0):
                pass
    except KeyboardInterrupt:
        pass
    except InspectorError as exc:
        err_console.print(f"[bold red]error:[/] {terminal(exc.message)}")
        raise typer.Exit(1) from None
    finally:
        agent.stop()
        console.print("edge agent stopped")


@app.command("status")
def status(
    config: EdgeConfig = DEFAULT_EDGE_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the spool: unsent and unanswered captures, re-sends, the oldest one's age."""
    from .spool import agent_running, read_stats

    settings = _settings(config)
    stats = read_stats(settings.spool.path, settings.spool.max_bytes)
    if stats is None:
        err_console.print(f"no spool at {settings.spool.path} yet (the agent has not run)")
        raise typer.Exit(1)
    age = stats.oldest_age_s()
    unanswered_age = stats.oldest_unanswered_age_s()
    running = agent_running(settings.spool.path)
    data = {
        "spool": str(settings.spool.path),
        "agent_running": running,
        "queue_depth": stats.depth,
        "queue_bytes": stats.bytes,
        "max_bytes": stats.max_bytes,
        "oldest_age_s": None if age is None else round(age, 1),
        "awaiting_verdict": stats.awaiting_verdict,
        "unanswered": stats.unanswered,
        "resent": stats.resent,
        "oldest_unanswered_age_s": None if unanswered_age is None else round(unanswered_age, 1),
        "last_error": stats.last_error,
    }
    if as_json:
        typer.echo(json.dumps(data))
        return
    table = Table(title=f"spool {settings.spool.path}", show_header=False)
    table.add_row("agent", "[green]running[/]" if running else "[yellow]not running[/]")
    table.add_row("queue depth", str(stats.depth))
    table.add_row(
        "queued size",
        f"{stats.bytes / 2**20:.2f} MiB of {stats.max_bytes / 2**20:.0f} MiB ({stats.fill:.0%})",
    )
    table.add_row("oldest unsent", "-" if age is None else _age(age))
    table.add_row("awaiting verdict", str(stats.awaiting_verdict))
    table.add_row("re-sent, still unanswered", str(stats.resent))
    table.add_row("oldest unanswered", "-" if unanswered_age is None else _age(unanswered_age))
    if stats.last_error:
        table.add_row("last broker refusal", f"[red]{stats.last_error}[/]")
    console.print(table)
    if stats.fill >= settings.spool.warn_fraction:
        console.print("[bold yellow]the spool is nearly full: check the broker connection[/]")


@app.command("send")
def send(
    images: Annotated[list[Path], typer.Argument(help="Photo files, one capture each.")],
    config: EdgeConfig = DEFAULT_EDGE_CONFIG,
    part_id: Annotated[str | None, typer.Option(help="Part id (default: the file name).")] = None,
    audio: Annotated[Path | None, typer.Option(help="Voice note (WAV/FLAC/OGG).")] = None,
    note: Annotated[str | None, typer.Option(help="Typed operator note.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for PUBACKs and verdicts.")] = 30.0,
    verdicts: Annotated[bool, typer.Option(help="Also wait for the verdicts.")] = True,
) -> None:
    """Capture photo files once; a running agent on the same spool sends them, else this does."""
    from .agent import EdgeAgent
    from .audio import load_wav
    from .display import Outcome
    from .triggers import CaptureCommand

    settings = _settings(config)
    # One-shot: no camera, no triggers, no folder; the spool and the broker are the same.
    settings = settings.model_copy(
        update={
            "camera": settings.camera.model_copy(update={"source": None}),
            "folder": settings.folder.model_copy(update={"path": None}),
            "triggers": settings.triggers.model_copy(update={"http_port": None, "mqtt": False}),
        }
    )
    agent = EdgeAgent(settings, console)
    answered: set[str] = set()
    done = threading.Condition()

    def on_outcome(outcome: Outcome) -> None:
        with done:
            answered.add(outcome.request_id)
            done.notify_all()

    agent.board.add_listener(on_outcome)
    try:
        wav = load_wav(audio, settings.audio.max_s) if audio is not None else None
        owner = agent.spool.try_own()
        ids = [
            agent.capture_file(
                path, cmd=CaptureCommand(part_id=part_id, note=note), audio_wav=wav
            ).request_id
            for path in images
        ]
        if not owner:
            console.print("a running agent owns this spool and will send the captures")
            return
        agent.start()
        deadline = time.monotonic() + wait
        if not agent.publisher.wait_delivered(ids, wait):
            err_console.print(
                f"[yellow]not all captures reached the broker within {wait:g} s; "
                "they stay in the spool for the agent[/]"
            )
            raise typer.Exit(1)
        console.print(f"[green]{len(ids)} capture(s) delivered to the broker[/]")
        if verdicts:
            with done:
                ok = done.wait_for(
                    lambda: set(ids) <= answered, max(0.0, deadline - time.monotonic())
                )
            if not ok:
                err_console.print(f"[yellow]no verdict for every capture within {wait:g} s[/]")
                raise typer.Exit(1)
    except InspectorError as exc:
        err_console.print(f"[bold red]error:[/] {terminal(exc.message)}")
        raise typer.Exit(1) from None
    finally:
        agent.stop()


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
