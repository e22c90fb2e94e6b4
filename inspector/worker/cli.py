"""`inspector serve` and `inspector submit`."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from inspector.context import settings_from
from inspector.protocol import RejectionMessage, StationKey
from inspector.safetext import json_line, terminal

console = Console(stderr=True)  # stdout carries only the verdict JSON

_STYLE = {
    "PASS": "bold white on green",
    "FAIL": "bold white on red",
    "REVIEW": "bold black on yellow",
}


def serve(
    ctx: typer.Context,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a worker: consume requests, infer, commit, publish verdicts (until SIGTERM)."""
    from inspector.worker.run import serve

    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("choose DEBUG, INFO, WARNING or ERROR", param_hint="--log-level")
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(settings_from(ctx))


def submit(
    ctx: typer.Context,
    image: Annotated[list[Path], typer.Option("--image", "-i", help="Photo file (repeatable).")],
    site: Annotated[str, typer.Option(help="Site slug.")],
    line: Annotated[str, typer.Option(help="Line slug.")],
    station: Annotated[str, typer.Option(help="Station slug.")],
    audio: Annotated[Path | None, typer.Option("--audio", "-a", help="Voice note.")] = None,
    note: Annotated[str | None, typer.Option(help="Typed operator note.")] = None,
    part_id: Annotated[str | None, typer.Option(help="Part id (default: a new id).")] = None,
    operator: Annotated[str | None, typer.Option(help="Operator name.")] = None,
    adapter: Annotated[str | None, typer.Option(help="Site adapter to use.")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait.")] = 60.0,
) -> None:
    """Publish one inspection and wait for its verdict; prints the verdict JSON."""
    from inspector.client import build_request
    from inspector.client import submit as submit_request
    from inspector.errors import InspectorError
    from inspector.mqtt import MqttTransport

    settings = settings_from(ctx)
    key = StationKey(site, line, station)
    try:
        request = build_request(
            key,
            part_id or f"part-{uuid.uuid4().hex[:8]}",
            image,
            audio=audio,
            note=note,
            operator=operator,
            adapter=adapter,
        )
    except InspectorError as exc:
        raise typer.BadParameter(exc.message) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    transport = MqttTransport(
        settings.broker, client_id=f"inspector-submit-{uuid.uuid4().hex[:12]}", clean_start=True
    )
    try:
        answer = submit_request(transport, request, timeout)
    finally:
        transport.stop()
    if isinstance(answer, RejectionMessage):
        console.print(
            Panel(
                f"[bold]{terminal(answer.code)}[/]\n{terminal(answer.message)}",
                title="REJECTED",
                style="red",
            )
        )
        typer.echo(json_line(answer.model_dump(mode="json", exclude_none=True)))
        raise typer.Exit(3)
    console.print(
        Panel(
            f"[{_STYLE[answer.verdict.value]}] {answer.verdict.value} [/]  "
            f"confidence {answer.confidence:.2f}\n{terminal(answer.rationale, multiline=True)}",
            title=terminal(f"{answer.site}/{answer.line}/{answer.station} {answer.part_id}"),
        ),
        highlight=False,
    )
    typer.echo(json_line(answer.model_dump(mode="json", exclude_none=True)))
