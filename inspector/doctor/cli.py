"""`inspector doctor`: every check in a table, what to do under each failure, exit 1 on one."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from inspector.context import settings_from
from inspector.safetext import json_line, terminal

if TYPE_CHECKING:
    from inspector.doctor.checks import Finding

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}

# Listed in --help without importing the checks (they pull in the store's health queries).
_IDS = "broker, migrations, model, gpu, disk, clock, review"
_ROLES = ("station", "worker", "review", "all-in-one")


def doctor(
    ctx: typer.Context,
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="What this host runs: station (broker only), worker, review or all-in-one; "
            "its checks must pass, optional services only warn (default: the config's role, "
            "all-in-one unless set).",
            show_default=False,
        ),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option(
            "--skip",
            help=f"Leave out a check (repeatable), by its id: {_IDS}.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each network check may take.")
    ] = 5.0,
    max_clock_skew: Annotated[
        float, typer.Option(min=0, help="Largest station-worker clock offset in seconds.")
    ] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per check (JSON Lines).")
    ] = False,
) -> None:
    """Check this host's settings against the broker, store, model, GPU, disk and clocks."""
    from inspector.doctor.checks import SPECS, DoctorOptions, Role, Status, check_id, run_checks

    chosen = _role(role)
    ids = [(name, check_id(name)) for name in skip or ()]
    unknown = [name for name, found in ids if found is None]
    if unknown:
        raise typer.BadParameter(
            f"no check named {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(spec.id for spec in SPECS)}",
            param_hint="--skip",
        )
    options = DoctorOptions(timeout_s=timeout, max_clock_skew_s=max_clock_skew)
    skipped = frozenset(found for _, found in ids if found is not None)
    findings = run_checks(
        lambda: settings_from(ctx), options, skipped, Role(chosen) if chosen else None
    )
    failed = [f for f in findings if f.status is Status.FAIL]
    ids_by_name = {spec.name: spec.id for spec in SPECS}
    if as_json:
        for f in findings:
            record = {
                "check": f.check,
                "id": ids_by_name.get(f.check, f.check),
                "status": f.status.value,
                "detail": f.detail,
                "fix": f.fix,
            }
            sys.stdout.write(json_line(record) + "\n")
    else:
        _table(findings)
        warned = sum(f.status is Status.WARN for f in findings)
        err = Console(stderr=True)
        if failed:
            err.print(f"[bold red]{len(failed)} check(s) failed[/]")
        else:
            err.print(f"[green]no check failed[/]{f' ({warned} warning(s))' if warned else ''}")
    if failed:
        raise typer.Exit(1)


def _role(role: str | None) -> str | None:
    if role is not None and role not in _ROLES:
        raise typer.BadParameter(
            f"{role!r} is not a role; choose one of {', '.join(_ROLES)}", param_hint="--role"
        )
    return role


def _table(findings: list[Finding]) -> None:
    table = Table(show_header=True, header_style="bold", show_lines=True)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("found / what to do", overflow="fold")
    for f in findings:
        text = terminal(f.detail) + (f"\n[bold]→[/] {terminal(f.fix)}" if f.fix else "")
        table.add_row(f.check, f"[{_STYLE[f.status]}]{f.status.value}[/]", text)
    Console().print(table)
