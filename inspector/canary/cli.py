"""`inspector golden` mark, unmark and list, and `inspector canary` run and status.

Each command parses, calls one function of the store or the canary, and renders with rich.
"""

from __future__ import annotations

import getpass
import logging
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from inspector.context import open_store, print_json, settings_from
from inspector.safetext import terminal

if TYPE_CHECKING:
    from inspector.store.golden import GoldenView

console = Console()
err_console = Console(stderr=True)

golden_app = typer.Typer(
    help="Golden parts: reviewed inspections every worker must answer as reviewed.",
    no_args_is_help=True,
)
canary_app = typer.Typer(help="The canary that checks every worker on golden parts.")

RequestArg = Annotated[str, typer.Argument(help="The inspection's request id.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who marks it (default: $USER).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for machines.")]


def _who(by: str | None) -> str:
    if by and by.strip():
        return by.strip()[:64]
    try:
        return getpass.getuser()[:64]
    except (OSError, KeyError):
        return "unknown"


@golden_app.command("mark")
def mark(
    ctx: typer.Context, request_id: RequestArg, by: ByOpt = None, json: JsonOpt = False
) -> None:
    """Mark a reviewed inspection golden: its reviewed answer is frozen as the expectation."""
    from inspector.store.golden import mark_golden

    with open_store(ctx) as store, store.db.write() as session:
        view, created = mark_golden(session, request_id, _who(by))
    if json:
        print_json({"golden": _record(view), "created": created})
        return
    what = "marked golden" if created else "already golden"
    console.print(f"{terminal(view.request_id)} {what}: must be {view.expected.value}")


@golden_app.command("unmark")
def unmark(
    ctx: typer.Context, request_id: RequestArg, by: ByOpt = None, json: JsonOpt = False
) -> None:
    """Stop sending an inspection as a golden part."""
    from inspector.store.golden import unmark_golden

    with open_store(ctx) as store, store.db.write() as session:
        removed = unmark_golden(session, request_id, _who(by))
    if json:
        print_json({"request_id": request_id, "unmarked": removed})
        return
    console.print(f"{terminal(request_id)} {'unmarked' if removed else 'was not golden'}")


@golden_app.command("list")
def list_(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    json: JsonOpt = False,
) -> None:
    """The golden parts, oldest mark first."""
    from inspector.store.golden import list_golden

    with open_store(ctx) as store, store.db.read() as session:
        views = list_golden(session, site)
    if json:
        print_json([_record(v) for v in views])
        return
    table = Table("request id", "site/line/station", "part", "expected", "marked by", "at")
    for v in views:
        table.add_row(
            terminal(v.request_id),
            terminal(f"{v.site}/{v.line}/{v.station}"),
            terminal(v.part_id),
            v.expected.value,
            terminal(v.marked_by),
            v.marked_at.isoformat(timespec="seconds"),
        )
    console.print(table)
    err_console.print(f"{len(views)} golden part(s)")


def _record(view: GoldenView) -> dict[str, object]:
    return {
        "request_id": view.request_id,
        "site": view.site,
        "line": view.line,
        "station": view.station,
        "part_id": view.part_id,
        "expected": view.expected.value,
        "marked_by": view.marked_by,
        "marked_at": view.marked_at.isoformat(),
    }


@canary_app.command("run")
def run(
    ctx: typer.Context,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Send the golden parts to every live worker each canary.period_s (until SIGTERM)."""
    from inspector.canary.run import serve

    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("choose DEBUG, INFO, WARNING or ERROR", param_hint="--log-level")
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = settings_from(ctx)
    if not settings.canary.enabled:
        err_console.print("canary.enabled is false: nothing to do")
        raise typer.Exit(code=0)
    serve(settings)


@canary_app.command("status")
def status(
    ctx: typer.Context,
    json: JsonOpt = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the broker.")] = 2.0,
) -> None:
    """One line per worker: its state, its adapters and the canary's word on it."""
    from inspector.canary.run import read_health

    lines = read_health(settings_from(ctx), timeout)
    if json:
        print_json(
            [
                {
                    "worker_id": line.worker_id,
                    "state": line.status.state if line.status else None,
                    "canary": line.health.model_dump(mode="json", by_alias=True)
                    if line.health
                    else None,
                }
                for line in lines
            ]
        )
        return
    table = Table("worker", "state", "site adapters", "canary", "problems")
    for line in lines:
        adapters = (
            ", ".join(f"{a.site}={a.name}@{a.version}" for a in line.status.site_adapters)
            if line.status
            else ""
        )
        health = line.health
        word = (
            f"{health.state} ({health.checked} sent, {health.mismatches} wrong, "
            f"{health.missing} missing)"
            if health
            else "not checked"
        )
        table.add_row(
            terminal(line.worker_id),
            line.status.state if line.status else "unknown",
            terminal(adapters),
            word,
            terminal("; ".join(health.problems) if health else ""),
        )
    console.print(table)
