"""The `inspector` command: one entry point, thin subcommands rendered with rich."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inspector.errors import ConfigError, InspectorError
from inspector.settings import DEFAULT_CONFIG, Settings, load_settings

if TYPE_CHECKING:
    from inspector.store import Store

app = typer.Typer(
    name="inspector",
    help="Factory inspection from photos and operator voice notes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
verdicts_app = typer.Typer(help="Browse and export stored verdicts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(verdicts_app, name="verdicts")

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"TOML settings file (default: {DEFAULT_CONFIG} when present).",
        envvar="INSPECTOR_CONFIG",
    ),
]


def settings_from(ctx: typer.Context) -> Settings:
    """The settings named by the global --config option, loaded once per command."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(obj.get("config"))
    settings: Settings = obj["settings"]
    return settings


@contextmanager
def open_store(ctx: typer.Context) -> Iterator[Store]:
    """The store named by the settings, closed when the command is done."""
    from inspector.store import Store

    store = Store.from_settings(settings_from(ctx).store)
    try:
        yield store
    finally:
        store.close()


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None) -> None:
    ctx.ensure_object(dict)["config"] = config


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the database schema to the newest revision (safe to repeat)."""
    from inspector.store import upgrade

    settings = settings_from(ctx)
    revision = upgrade(settings.store.url)
    console.print(f"[green]database at revision {revision}[/] ({_safe_url(settings.store.url)})")


@app.command("schema")
def schema(
    message: Annotated[
        str | None,
        typer.Argument(help="One message: request, verdict, rejection or worker-status."),
    ] = None,
) -> None:
    """Print the JSON Schema of the wire messages."""
    from inspector.protocol import message_schemas

    schemas = message_schemas()
    if message is not None:
        if message not in schemas:
            raise typer.BadParameter(
                f"unknown message {message!r}; choose one of {', '.join(schemas)}",
                param_hint="MESSAGE",
            )
        out: dict[str, Any] = schemas[message]
    else:
        out = schemas
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


def _parse_when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date (2026-11-23) or time (2026-11-23T08:00+09:00)",
            param_hint=name,
        ) from None
    if len(value) == 10:
        parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


SiteOpt = Annotated[str | None, typer.Option(help="Only this site.")]
LineOpt = Annotated[str | None, typer.Option(help="Only this line.")]
StationOpt = Annotated[str | None, typer.Option(help="Only this station.")]
VerdictOpt = Annotated[
    str | None, typer.Option("--verdict", help="Only PASS, FAIL or REVIEW.", case_sensitive=False)
]
SinceOpt = Annotated[str | None, typer.Option(help="Captured at or after (ISO date/time).")]
UntilOpt = Annotated[str | None, typer.Option(help="Captured before (ISO date/time).")]


def _filter(
    site: str | None,
    line: str | None,
    station: str | None,
    verdict: str | None,
    since: str | None,
    until: str | None,
) -> Any:
    from inspector.store import VerdictFilter

    if verdict is not None and verdict.upper() not in ("PASS", "FAIL", "REVIEW"):
        raise typer.BadParameter(
            f"{verdict!r}: choose PASS, FAIL or REVIEW", param_hint="--verdict"
        )
    return VerdictFilter(
        site=site,
        line=line,
        station=station,
        verdict=verdict.upper() if verdict else None,
        since=_parse_when(since, "--since"),
        until=_parse_when(until, "--until"),
    )


_COLOURS = {"PASS": "bold green", "FAIL": "bold red", "REVIEW": "bold yellow"}


@verdicts_app.command("list")
def verdicts_list(
    ctx: typer.Context,
    site: SiteOpt = None,
    line: LineOpt = None,
    station: StationOpt = None,
    verdict: VerdictOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Most rows shown.")] = 50,
) -> None:
    """List verdicts, newest capture first."""
    from inspector.store import list_verdicts

    flt = _filter(site, line, station, verdict, since, until)
    with open_store(ctx) as store, store.db.read() as session:
        rows = list_verdicts(session, flt, limit=limit)
        table = Table("captured", "station", "part", "verdict", "conf.", "adapter", "request")
        for row in rows:
            insp = row.inspection
            table.add_row(
                insp.captured_at.strftime("%Y-%m-%d %H:%M:%S"),
                f"{insp.site}/{insp.line}/{insp.station}",
                insp.part_id,
                f"[{_COLOURS.get(row.verdict, '')}]{row.verdict}[/]",
                f"{row.confidence:.2f}",
                row.adapter,
                insp.request_id,
            )
    console.print(table)
    console.print(f"{len(rows)} verdict(s)")


@verdicts_app.command("show")
def verdicts_show(
    ctx: typer.Context, request_id: Annotated[str, typer.Argument(help="The request's UUID.")]
) -> None:
    """Show one inspection with every verdict recorded for it."""
    from inspector.store import find_inspection, verdict_message

    try:
        rid = UUID(request_id)
    except ValueError:
        raise typer.BadParameter(f"{request_id!r} is not a UUID", param_hint="REQUEST_ID") from None
    with open_store(ctx) as store, store.db.read() as session:
        insp = find_inspection(session, rid)
        if insp is None:
            err_console.print(f"[red]no inspection with request_id {rid}[/]")
            raise typer.Exit(1)
        console.print(
            f"[bold]{insp.site}/{insp.line}/{insp.station}[/] part {insp.part_id} "
            f"captured {insp.captured_at.isoformat()}"
        )
        if insp.note:
            console.print(f"operator note: {insp.note}")
        for row in insp.verdicts:
            msg = verdict_message(row)
            console.print_json(msg.model_dump_json(by_alias=True, exclude_none=True))
        if not insp.verdicts:
            console.print("[yellow]no verdict yet[/]")


@verdicts_app.command("export")
def verdicts_export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    output: Annotated[Path, typer.Option("--output", "-o", help="File, or - for stdout.")] = Path(
        "-"
    ),
    site: SiteOpt = None,
    line: LineOpt = None,
    station: StationOpt = None,
    verdict: VerdictOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Export verdicts as CSV or JSON Lines."""
    if fmt not in ("csv", "jsonl"):
        raise typer.BadParameter(f"{fmt!r}: choose csv or jsonl", param_hint="--format")
    flt = _filter(site, line, station, verdict, since, until)
    with open_store(ctx) as store:
        if str(output) == "-":
            count = _write_export(store, flt, fmt, sys.stdout)
        else:
            with output.open("w", newline="", encoding="utf-8") as fh:
                count = _write_export(store, flt, fmt, fh)
    err_console.print(f"exported {count} verdict(s)")


def _write_export(store: Store, flt: Any, fmt: str, out: TextIO) -> int:
    from inspector.store import iter_export
    from inspector.store.queries import EXPORT_COLUMNS

    count = 0
    with store.db.read() as session:
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for rec in iter_export(session, flt):
                rec["defects"] = ";".join(d["type"] for d in rec["defects"])
                writer.writerow(rec)
                count += 1
        else:
            for rec in iter_export(session, flt):
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                count += 1
    return count


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _register_plugins() -> None:
    # Each package adds its own commands; none imports torch until a command runs.
    from edge.cli import register as register_edge
    from inspector.bench.cli import register as register_bench
    from inspector.demo.cli import register as register_demo
    from inspector.engine.cli import register as register_engine
    from inspector.worker.cli import register as register_worker

    register_worker(app)
    register_engine(app)
    register_bench(app)
    register_edge(app)
    register_demo(app)


_register_plugins()


def main() -> None:
    """Console entry point: runs the app, turning Inspector errors into clear messages."""
    try:
        app()
    except ConfigError as exc:
        err_console.print(f"[bold red]configuration error[/]: {escape(exc.message)}")
        raise SystemExit(2) from None
    except InspectorError as exc:
        err_console.print(f"[bold red]error[/]: {escape(exc.message)}")
        raise SystemExit(1) from None
