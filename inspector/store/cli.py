"""`inspector db …` and `inspector verdicts …`: the schema; stored verdicts listed, exported."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.table import Table

from inspector.context import open_store, print_json, print_json_lines, settings_from
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


JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="JSON only on stdout (never wrapped); counts and hints go to stderr."
    ),
]


def _when_shown(when: datetime) -> str:
    """A stored time as people read it, with its zone (stored times are UTC)."""
    return when.strftime("%Y-%m-%d %H:%M:%S %Z") if when.tzinfo else f"{when:%Y-%m-%d %H:%M:%S}"


def _verdict_record(row: Any) -> dict[str, Any]:
    """One verdict as JSON: the wire message plus its inspection's capture time."""
    from inspector.store import verdict_message

    body: dict[str, Any] = verdict_message(row).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    body["captured_at"] = row.inspection.captured_at.isoformat()
    return body


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
    as_json: JsonOpt = False,
) -> None:
    """List verdicts, newest capture first, a page at a time (stable while verdicts arrive).

    With --json, one verdict per line (JSON Lines); the count and the next page's cursor go
    to stderr.
    """
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
        if as_json:
            print_json_lines(_verdict_record(row) for row in rows)
        else:
            console.print(_verdict_table(rows))
    err_console.print(f"{len(rows)} verdict(s)", highlight=False)
    if next_page is not None:
        err_console.print(f"more: --after {next_page}", highlight=False, soft_wrap=True)


def _verdict_table(rows: list[Any]) -> Table:
    table = Table("captured", "station", "part", "verdict", "conf.", "adapter")
    # The whole request id, never cut: it is what `verdicts show` takes.
    table.add_column("request", no_wrap=True, min_width=36)
    for row in rows:
        insp = row.inspection
        table.add_row(
            _when_shown(insp.captured_at),
            terminal(f"{insp.site}/{insp.line}/{insp.station}"),
            terminal(insp.part_id),
            f"[{_COLOURS.get(row.verdict, '')}]{row.verdict}[/]",
            f"{row.confidence:.2f}",
            terminal(row.adapter + (f"@{row.adapter_version}" if row.adapter_version else "")),
            str(insp.request_id),
        )
    return table


def _choose_inspection(session: Any, key: str) -> Any:
    """The inspection `key` names: a request id or its prefix, else a part id (its latest)."""
    from inspector.safetext import excerpt
    from inspector.store.verdicts import inspections_by_id_prefix, inspections_of_part

    found = inspections_by_id_prefix(session, key) if key.strip() else []
    if len(found) > 1:
        ids = "\n  ".join(str(i.request_id) for i in found)
        err_console.print(
            f"[red]{terminal(excerpt(key))} is ambiguous: it starts {len(found)}"
            f"{'+' if len(found) == 10 else ''} request ids; give more of it:[/]\n  {ids}",
            highlight=False,
        )
        raise typer.Exit(2)
    if found:
        return found[0]
    parts = inspections_of_part(session, key)
    if not parts:
        err_console.print(
            f"[red]no inspection has a request id starting {terminal(excerpt(key))} or part id "
            f"{terminal(excerpt(key))}[/] (`inspector verdicts list` shows them)",
            highlight=False,
        )
        raise typer.Exit(1)
    if len(parts) > 1:
        others = "\n  ".join(
            f"{i.request_id}  captured {_when_shown(i.captured_at)}" for i in parts[1:]
        )
        err_console.print(
            f"part {terminal(key)} was inspected {len(parts)}{'+' if len(parts) == 10 else ''} "
            f"times; this is the latest. The others:\n  {others}",
            highlight=False,
        )
    return parts[0]


@verdicts_app.command("show")
def verdicts_show(
    ctx: typer.Context,
    key: Annotated[
        str,
        typer.Argument(
            metavar="ID_OR_PART",
            help="A request id, a prefix of one (as long as it is unique), or a part id "
            "(its latest inspection).",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Show one inspection with every verdict recorded for it.

    Stdout holds only JSON: each verdict (with --json, one document: the inspection and its
    verdicts); the inspection's header goes to stderr.
    """
    from inspector.store import verdict_message

    with open_store(ctx) as store, store.db.read() as session:
        insp = _choose_inspection(session, key)
        verdicts = [
            verdict_message(row).model_dump(mode="json", by_alias=True, exclude_none=True)
            for row in insp.verdicts
        ]
        if as_json:
            print_json(
                {
                    "request_id": str(insp.request_id),
                    "site": insp.site,
                    "line": insp.line,
                    "station": insp.station,
                    "part_id": insp.part_id,
                    "captured_at": insp.captured_at.isoformat(),
                    "operator": insp.operator,
                    "note": insp.note,
                    "verdicts": verdicts,
                }
            )
            return
        err_console.print(
            f"[bold]{terminal(f'{insp.site}/{insp.line}/{insp.station}')}[/] "
            f"part {terminal(insp.part_id)} captured {_when_shown(insp.captured_at)} "
            f"request {insp.request_id}",
            highlight=False,
        )
        if insp.note:
            err_console.print(f"operator note: {terminal(insp.note, multiline=True)}")
        for body in verdicts:
            print_json(body)
        if not verdicts:
            err_console.print("[yellow]no verdict yet[/]")


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
