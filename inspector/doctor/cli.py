"""`inspector doctor`: every check in a table, what to do under each failure, exit 1 on one."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from inspector.context import settings_from
from inspector.safetext import terminal

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def doctor(
    ctx: typer.Context,
    skip: Annotated[
        list[str] | None,
        typer.Option(
            "--skip",
            help="Leave out a check that does not apply to this host (repeatable): "
            "broker, migrations, model, gpu, blob disk, clock skew, review.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each network check may take.")
    ] = 5.0,
    max_clock_skew: Annotated[
        float, typer.Option(min=0, help="Largest station-worker clock offset in seconds.")
    ] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per check.")] = False,
) -> None:
    """Check this host's settings against the broker, store, model, GPU, disk and clocks."""
    from inspector.doctor import CHECKS, Status, run_checks
    from inspector.doctor.checks import DoctorOptions

    unknown = sorted(set(skip or ()) - set(CHECKS))
    if unknown:
        raise typer.BadParameter(
            f"no check named {', '.join(map(repr, unknown))}; choose from {', '.join(CHECKS)}",
            param_hint="--skip",
        )
    options = DoctorOptions(timeout_s=timeout, max_clock_skew_s=max_clock_skew)
    findings = run_checks(lambda: settings_from(ctx), options, frozenset(skip or ()))
    failed = [f for f in findings if f.status is Status.FAIL]
    if as_json:
        for f in findings:
            record = {"check": f.check, "status": f.status.value, "detail": f.detail, "fix": f.fix}
            sys.stdout.write(json.dumps(record) + "\n")
    else:
        console = Console()
        table = Table(show_header=True, header_style="bold", show_lines=True)
        table.add_column("check")
        table.add_column("status")
        table.add_column("found / what to do")
        for f in findings:
            text = terminal(f.detail) + (f"\n[bold]→[/] {terminal(f.fix)}" if f.fix else "")
            table.add_row(f.check, f"[{_STYLE[f.status]}]{f.status.value}[/]", text)
        console.print(table)
        if failed:
            console.print(f"[bold red]{len(failed)} check(s) failed[/]")
        else:
            console.print("[green]no check failed[/]")
    if failed:
        raise typer.Exit(1)
