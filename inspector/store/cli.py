"""`inspector db …` and `inspector verdicts …`: the schema; stored verdicts listed, exported."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from inspector.context import open_store, settings_from
from inspector.safetext import csv_cell, json_line, terminal

if TYPE_CHECKING:
    from inspector.store import Store

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
verdicts_app = typer.Typer(help="Browse and export stored verdicts.", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the database schema to the newest revision (safe to repeat)."""
    from inspector.store.database import safe_url, upgrade

    settings = settings_from(ctx)
    revision = upgrade(settings.store.url)
    console.print(f"[green]database at revision {revision}[/] ({safe_url(settings.store.url)})")


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
    from inspector.store.filters import VerdictFilter

    for value, option in ((site, "--site"), (line, "--line"), (station, "--station")):
        _check_slug(value, option)
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


def _check_slug(value: str | None, option: str) -> None:
    """Sites, lines and stations are slugs; any other value would silently match nothing."""
    import re

    from inspector.safetext import excerpt
    from inspector.settings import SLUG

    if value is None or re.fullmatch(SLUG, value):
        return
    slug = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    hint = f" (did you mean {slug!r}?)" if slug and re.fullmatch(SLUG, slug) else ""
    raise typer.BadParameter(
        f"{excerpt(value)} is not a slug: names are lowercase letters a-z, digits and '-', "
        f"1-64 characters{hint}",
        param_hint=option,
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
    after: Annotated[
        str | None,
        typer.Option(help="Continue a listing from the cursor the previous page printed."),
    ] = None,
) -> None:
    """List verdicts, newest capture first, a page at a time (stable while verdicts arrive)."""
    from inspector.errors import InvalidInput
    from inspector.store.filters import Cursor
    from inspector.store.verdicts import list_verdicts

    try:
        cursor = Cursor.parse(after) if after is not None else None
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint="--after") from None
    flt = _filter(site, line, station, verdict, since, until)
    with open_store(ctx) as store, store.db.read() as session:
        rows = list_verdicts(session, flt, limit=limit + 1, after=cursor)
        more = len(rows) > limit
        rows = rows[:limit]
        next_page = Cursor.after(rows[-1]).token() if more else None
        table = Table("captured", "station", "part", "verdict", "conf.", "adapter", "request")
        for row in rows:
            insp = row.inspection
            table.add_row(
                insp.captured_at.strftime("%Y-%m-%d %H:%M:%S"),
                terminal(f"{insp.site}/{insp.line}/{insp.station}"),
                terminal(insp.part_id),
                f"[{_COLOURS.get(row.verdict, '')}]{row.verdict}[/]",
                f"{row.confidence:.2f}",
                terminal(row.adapter + (f"@{row.adapter_version}" if row.adapter_version else "")),
                str(insp.request_id),
            )
    console.print(table)
    console.print(f"{len(rows)} verdict(s)")
    if next_page is not None:
        console.print(f"more: --after {next_page}", highlight=False)


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
            f"[bold]{terminal(f'{insp.site}/{insp.line}/{insp.station}')}[/] "
            f"part {terminal(insp.part_id)} captured {insp.captured_at.isoformat()}"
        )
        if insp.note:
            console.print(f"operator note: {terminal(insp.note, multiline=True)}")
        for row in insp.verdicts:
            body = verdict_message(row).model_dump(mode="json", by_alias=True, exclude_none=True)
            # Model and operator text, with unsafe characters as JSON escapes; no markup.
            console.print(json_line(body, indent=2), markup=False, highlight=False)
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
    from inspector.store.export import CSV_COLUMNS, csv_record, iter_export

    count = 0
    with store.db.read() as session:
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for rec in iter_export(session, flt):
                writer.writerow({k: csv_cell(v) for k, v in csv_record(rec).items()})
                count += 1
        else:
            for rec in iter_export(session, flt):
                out.write(json_line(rec) + "\n")
                count += 1
    return count
